package runtimecatalog

import (
	"context"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// FuzzRuntimeWrite writes arbitrary names and values over an existing runtime:
// the backend never panics, a rejected write leaves storage exactly as it
// was, an accepted one reads back as written, and nothing the engine would
// drop or refuse is ever accepted. memText is memory_bytes sent as text, as
// the vault CLI sends it.
func FuzzRuntimeWrite(f *testing.F) {
	f.Add("r", "runc", "/examplelimit/", int64(1000), int64(10000000), true, "")
	f.Add("a.b", "", "vault.slice", int64(-1), int64(0), false, "9007199254740993")
	f.Add("-x", "run sc", "/../", int64(0), int64(5), false, "010")
	f.Add("x/y", "r\x00", "a//b", int64(1), int64(-7), true, "1.9")
	f.Add("a..b", "runc", "", int64(10_000_000), int64(6291456), false, "+7000000")

	f.Fuzz(func(t *testing.T, name, ociRuntime, cgroupParent string, cpu, mem int64, rootless bool, memText string) {
		b, s := newTestBackend(t)
		ctx := context.Background()
		mustDo(t, b, s, logical.UpdateOperation, "catalog/container/seed", map[string]interface{}{"cpu_nanos": 30000000})
		before := snapshot(t, s)

		data := map[string]interface{}{
			"oci_runtime": ociRuntime, "cgroup_parent": cgroupParent,
			"cpu_nanos": cpu, "memory_bytes": mem, "rootless": rootless,
		}
		if memText != "" {
			data["memory_bytes"] = memText
		}
		req := &logical.Request{Operation: logical.UpdateOperation, Path: "catalog/container/" + name, Storage: s, Data: data}
		resp, err := b.HandleRequest(ctx, req)
		if err != nil || (resp != nil && resp.IsError()) {
			if after := snapshot(t, s); !reflect.DeepEqual(before, after) {
				t.Fatalf("rejected write (%v %v) changed storage:\nbefore %v\nafter  %v", err, resp, before, after)
			}
			return
		}

		if memText != "" {
			exact, err := strconv.ParseInt(memText, 10, 64)
			if err != nil || strconv.FormatInt(exact, 10) != memText {
				t.Fatalf("memory_bytes %q was accepted but is not a plain decimal integer", memText)
			}
			mem = exact
		}
		if (cpu != 0 && cpu < minNanoCPUs) || (mem != 0 && mem < minMemoryBytes) || strings.Contains(name, "..") {
			t.Fatalf("accepted what the engine or storage would refuse: %q %#v", name, data)
		}
		read := mustDo(t, b, s, logical.ReadOperation, "catalog/container/"+name, nil)
		if read == nil {
			t.Fatalf("accepted write of %q does not read back", name)
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
