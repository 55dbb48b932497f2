// Deleting hosted mounts on fake plugins, with requests in flight and
// leases out.

package hosting

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// Delete waits for the requests in flight, then no container of the mount
// runs, its data is gone, and later requests (even one that found the
// mount still stored) get a 404 and start nothing.
func TestDeleteDuringRequests(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 8)
	e := &fakeEngine{handler: func(ctx context.Context, p *fakePlugin, _ *logical.Request) (*logical.Response, error) {
		entered <- struct{}{}
		<-release
		return &logical.Response{Data: map[string]interface{}{"container": p.id}}, nil
	}}
	th := newTestHost(t, e)
	m := th.mount(t, "kv", "kv")
	th.store.Data(m.UUID).Put(context.Background(), &logical.StorageEntry{Key: "k", Value: []byte("v")})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := th.read(context.Background(), "kv", "x"); err != nil {
				t.Errorf("a request in flight during the delete: %v", err)
			}
		}()
		<-entered
	}
	removed := make(chan error, 1)
	go func() { removed <- th.Remove(context.Background(), m, false, "runtimes/") }()
	select {
	case err := <-removed:
		t.Fatalf("the delete did not wait for the requests in flight: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	wg.Wait()
	if err := <-removed; err != nil {
		t.Fatal(err)
	}
	// The catalog deletes the entry after the host; a request between the
	// two still finds it stored.
	_, err := th.read(context.Background(), "kv", "x")
	if code, _ := codeOf(err); code != 404 {
		t.Fatalf("a request after the delete: %v", err)
	}
	if th.engine.starts() != 1 || len(th.engine.running()) != 0 {
		t.Fatalf("after the delete: %d starts, running %v", th.engine.starts(), th.engine.running())
	}
	if keys, _ := logical.CollectKeys(context.Background(), &th.store.storage); len(keys) != 0 {
		t.Fatalf("left in storage: %v", keys)
	}
}

// A lease issued by a request that was in flight when the delete counted
// none refuses the delete: leases are counted again once requests in
// flight are done. The mount keeps its data and serves on, unstopped.
func TestLeaseIssuedDuringTheDelete(t *testing.T) {
	release, entered := make(chan struct{}), make(chan struct{}, 1)
	e := &fakeEngine{handler: func(_ context.Context, p *fakePlugin, req *logical.Request) (*logical.Response, error) {
		if req.Path == "slow" {
			entered <- struct{}{}
			<-release
			return &logical.Response{Secret: &logical.Secret{LeaseOptions: logical.LeaseOptions{TTL: time.Hour},
				InternalData: map[string]interface{}{"secret_type": "creds"}}, Data: map[string]interface{}{}}, nil
		}
		return &logical.Response{Data: map[string]interface{}{"container": p.id}}, nil
	}}
	th := newTestHost(t, e)
	m := th.mount(t, "db", "db")
	th.store.Data(m.UUID).Put(context.Background(), &logical.StorageEntry{Key: "k", Value: []byte("v")})
	go th.read(context.Background(), "db", "slow")
	<-entered
	removed := make(chan error, 1)
	go func() { removed <- th.Remove(context.Background(), m, false, "runtimes/") }()
	time.Sleep(50 * time.Millisecond) // the delete has counted no lease, and waits for the request
	close(release)
	if err := <-removed; err == nil || !strings.Contains(err.Error(), "hosted mount db has 1 leases outstanding") {
		t.Fatalf("a delete during a request that issued a lease: %v", err)
	}
	if c := containerOf(t)(th.read(context.Background(), "db", "x")); c != "c1" {
		t.Fatalf("after the refused delete, served by %s: it did not serve on", c)
	}
	if entry, _ := th.store.Data(m.UUID).Get(context.Background(), "k"); entry == nil {
		t.Fatal("a refused delete cleared the data")
	}
}

// Leases are counted as they are issued and revoked, written behind, and
// a mount with leases out is deleted only with force.
func TestLeaseCounting(t *testing.T) {
	e := &fakeEngine{handler: func(_ context.Context, p *fakePlugin, req *logical.Request) (*logical.Response, error) {
		if req.Operation == logical.RevokeOperation {
			return nil, nil
		}
		secret := &logical.Secret{LeaseOptions: logical.LeaseOptions{TTL: time.Hour}}
		if req.MountPoint == "runtimes/mounts/db/" { // kv's non-leased answer has no secret_type
			secret.InternalData = map[string]interface{}{"secret_type": "creds"}
		}
		return &logical.Response{Secret: secret, Data: map[string]interface{}{}}, nil
	}}
	th := newTestHost(t, e)
	m := th.mount(t, "db", "db")
	kv := th.mount(t, "kv", "kvh") // kv under another name: its Secret without a secret_type is no lease
	for i := 0; i < 3; i++ {
		th.read(context.Background(), "db", "creds")
		if resp, _ := th.read(context.Background(), "kv", "x"); resp.Secret != nil {
			t.Fatal("a Secret without a secret_type kept its lease")
		}
	}
	th.Forward(context.Background(), "db", "", &logical.Request{Operation: logical.RevokeOperation, MountPoint: "runtimes/"})
	err := th.Remove(context.Background(), m, false, "runtimes/")
	want := "hosted mount db has 2 leases outstanding: revoke them first with `vault lease revoke -prefix runtimes/mounts/db/`, or delete with force=true"
	if err == nil || err.Error() != want {
		t.Fatalf("delete with leases out:\n%v\nwant\n%s", err, want)
	}
	if err := th.Remove(context.Background(), kv, false, "runtimes/"); err != nil {
		t.Fatalf("kv issued leases: %v", err)
	}
	if err := th.Remove(context.Background(), m, true, "runtimes/"); err != nil {
		t.Fatal(err)
	}
	if n, _ := th.store.Leases(context.Background(), m.UUID); n != 0 {
		t.Fatalf("the count outlived the mount: %d", n)
	}
}

// A delete that stopped the mount but could not clear its data is
// repeated until it is done.
func TestDeleteIsRepeatedUntilDone(t *testing.T) {
	th := newTestHost(t, nil)
	m := th.mount(t, "kv", "kv")
	th.store.Data(m.UUID).Put(context.Background(), &logical.StorageEntry{Key: "k", Value: []byte("v")})
	th.store.clearErr = errors.New("context deadline exceeded")
	if err := th.Remove(context.Background(), m, false, "runtimes/"); err == nil ||
		err.Error() != "clearing the data of hosted mount kv: context deadline exceeded" {
		t.Fatalf("a delete whose clearing failed: %v", err)
	}
	if err := th.Remove(context.Background(), m, false, "runtimes/"); err != nil {
		t.Fatalf("the delete again: %v", err)
	}
	if keys, _ := logical.CollectKeys(context.Background(), &th.store.storage); len(keys) != 0 || len(th.engine.running()) != 0 {
		t.Fatalf("left: keys %v, running %v", keys, th.engine.running())
	}
}
