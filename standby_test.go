package runtimecatalog

import (
	"context"
	"errors"
	"testing"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
)

// factoryOn makes a backend through Factory, as the server does, on a node
// in the given replication state.
func factoryOn(t *testing.T, state consts.ReplicationState) (*backend, logical.Storage) {
	t.Helper()
	storage := &logical.InmemStorage{}
	sys := &logical.StaticSystemView{ReplicationStateVal: state}
	lb, err := Factory(context.Background(), &logical.BackendConfig{System: sys, StorageView: storage})
	if err != nil {
		t.Fatal(err)
	}
	b := lb.(*backend)
	t.Cleanup(func() { b.Cleanup(context.Background()) })
	return b, storage
}

// On a standby that serves reads (OpenBao's Raft standbys), every request
// goes to the active node: the server forwards on ErrReadOnly. Nothing is
// answered from the standby's trailing copy, nothing is written, and no
// hosted mount starts there.
func TestStandbyForwardsEveryRequest(t *testing.T) {
	b, storage := factoryOn(t, consts.ReplicationDRDisabled|consts.ReplicationPerformanceStandby)
	if err := b.Initialize(context.Background(), &logical.InitializationRequest{Storage: storage}); err != nil {
		t.Fatalf("Initialize on a standby: %v", err)
	}
	for _, req := range []struct {
		op   logical.Operation
		path string
		data map[string]interface{}
	}{
		{logical.UpdateOperation, "catalog/container/rt", map[string]interface{}{"oci_runtime": "runc"}},
		{logical.ReadOperation, "catalog/container/rt", nil},
		{logical.ListOperation, "catalog", nil},
		{logical.ReadOperation, "config", nil},
		{logical.UpdateOperation, "hosted/kv", map[string]interface{}{"plugin": "kv"}},
		{logical.ReadOperation, "mounts/kv/secret", nil},
		{logical.UpdateOperation, "mounts/kv/secret", map[string]interface{}{"a": "b"}},
	} {
		resp, err := b.HandleRequest(context.Background(), &logical.Request{Operation: req.op, Path: req.path, Data: req.data, Storage: storage})
		if !errors.Is(err, logical.ErrReadOnly) || resp != nil {
			t.Errorf("%s %s on a standby: %v, %v; want nil and ErrReadOnly (forwarded)", req.op, req.path, resp, err)
		}
	}
	// The server answers an existence check's error with a 500 rather than
	// forwarding: the check itself must answer, from storage.
	for _, path := range []string{"catalog/container/rt", "config", "mounts/kv/secret"} {
		if _, _, err := b.HandleExistenceCheck(context.Background(), &logical.Request{Operation: logical.CreateOperation, Path: path, Storage: storage}); err != nil {
			t.Errorf("existence check of %s on a standby: %v", path, err)
		}
	}
	if resp, err := b.HandleRequest(context.Background(), &logical.Request{Operation: logical.RollbackOperation, Path: "", Storage: storage}); err != nil || resp != nil {
		t.Errorf("rollback on a standby: %v, %v; want nothing to do", resp, err)
	}
	keys, err := storage.List(context.Background(), "")
	if err != nil || len(keys) != 0 {
		t.Fatalf("a standby wrote %v (%v)", keys, err)
	}
}

// The same Factory on an active node serves.
func TestActiveNodeServes(t *testing.T) {
	b, storage := factoryOn(t, consts.ReplicationDRDisabled|consts.ReplicationPerformancePrimary)
	resp, err := b.HandleRequest(context.Background(), &logical.Request{Operation: logical.UpdateOperation, Path: "catalog/container/rt",
		Data: map[string]interface{}{"oci_runtime": "runc"}, Storage: storage})
	if err != nil || (resp != nil && resp.IsError()) {
		t.Fatalf("write on the active node: %v, %v", resp, err)
	}
	if data := mustDo(t, b, storage, logical.ReadOperation, "catalog/container/rt", nil).Data; data["oci_runtime"] != "runc" {
		t.Fatalf("read on the active node: %v", data)
	}
}
