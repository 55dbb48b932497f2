package runtimecatalog

import (
	"context"
	"reflect"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// FuzzRuntimeWrite writes arbitrary names and values over an existing runtime:
// the backend never panics, a rejected write leaves storage exactly as it
// was, and an accepted one reads back as written.
func FuzzRuntimeWrite(f *testing.F) {
	f.Add("r", "runc", "/examplelimit/", int64(1000), int64(10000000), true)
	f.Add("a.b", "", "vault.slice", int64(-1), int64(0), false)
	f.Add("-x", "run sc", "/../", int64(0), int64(5), false)
	f.Add("x/y", "r\x00", "a//b", int64(1), int64(-7), true)

	f.Fuzz(func(t *testing.T, name, ociRuntime, cgroupParent string, cpu, mem int64, rootless bool) {
		b, s := newTestBackend(t)
		ctx := context.Background()
		mustDo(t, b, s, logical.UpdateOperation, "catalog/container/seed", map[string]interface{}{"cpu_nanos": 30000000})
		before := snapshot(t, s)

		data := map[string]interface{}{
			"oci_runtime": ociRuntime, "cgroup_parent": cgroupParent,
			"cpu_nanos": cpu, "memory_bytes": mem, "rootless": rootless,
		}
		req := &logical.Request{Operation: logical.UpdateOperation, Path: "catalog/container/" + name, Storage: s, Data: data}
		resp, err := b.HandleRequest(ctx, req)
		if err != nil || (resp != nil && resp.IsError()) {
			if after := snapshot(t, s); !reflect.DeepEqual(before, after) {
				t.Fatalf("rejected write (%v %v) changed storage:\nbefore %v\nafter  %v", err, resp, before, after)
			}
			return
		}

		read, err := b.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "catalog/container/" + name, Storage: s})
		if err != nil || read == nil {
			t.Fatalf("accepted write of %q does not read back: %v %v", name, read, err)
		}
		if read.Data["cgroup_parent"] != cgroupParent || read.Data["cpu_nanos"] != cpu || read.Data["memory_bytes"] != mem || read.Data["rootless"] != rootless {
			t.Fatalf("read back %#v, wrote %#v", read.Data, data)
		}
	})
}

func snapshot(t *testing.T, s logical.Storage) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	var walk func(prefix string)
	walk = func(prefix string) {
		keys, err := s.List(ctx, prefix)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if k[len(k)-1] == '/' {
				walk(prefix + k)
				continue
			}
			se, err := s.Get(ctx, prefix+k)
			if err != nil {
				t.Fatal(err)
			}
			out[prefix+k] = string(se.Value)
		}
	}
	walk("")
	return out
}
