package runtimecatalog

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

func TestRuntimeWriteReadAllFields(t *testing.T) {
	b, s := newTestBackend(t)
	resp := mustDo(t, b, s, logical.UpdateOperation, "catalog/container/gvisor-limited", map[string]interface{}{
		"oci_runtime":   "runc",
		"cgroup_parent": "/examplelimit/",
		"cpu_nanos":     10000000000,
		"memory_bytes":  10000000,
	})
	if resp != nil {
		t.Fatalf("want no response (204), got %#v", resp)
	}

	got := mustDo(t, b, s, logical.ReadOperation, "catalog/container/gvisor-limited", nil).Data
	want := map[string]interface{}{
		"name": "gvisor-limited", "type": "container", "oci_runtime": "runc",
		"cgroup_parent": "/examplelimit/", "cpu_nanos": int64(10000000000), "memory_bytes": int64(10000000), "rootless": false,
		"plugins": []interface{}{}, // an empty list, read from the raw body
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("read:\n got %#v\nwant %#v", got, want)
	}
}

func TestRuntimeDefaultOCIRuntimeReadsAsRunsc(t *testing.T) {
	b, s := newTestBackend(t)
	mustDo(t, b, s, logical.UpdateOperation, "catalog/container/plain", nil)
	got := mustDo(t, b, s, logical.ReadOperation, "catalog/container/plain", nil).Data
	if got["oci_runtime"] != "runsc" {
		t.Fatalf("oci_runtime = %v, want the effective default runsc", got["oci_runtime"])
	}
	// The default is applied when read, never stored.
	stored, err := decodeRuntime(s.Get(context.Background(), runtimeKey("plain")))
	if err != nil || stored.OCIRuntime != "" {
		t.Fatalf("stored oci_runtime = %q (err %v), want empty", stored.OCIRuntime, err)
	}
}

func TestRuntimeWriteIsFullReplace(t *testing.T) {
	b, s := newTestBackend(t)
	mustDo(t, b, s, logical.UpdateOperation, "catalog/container/r", map[string]interface{}{
		"oci_runtime": "runc", "cpu_nanos": 50000000, "rootless": true,
	})
	mustDo(t, b, s, logical.UpdateOperation, "catalog/container/r", map[string]interface{}{"memory_bytes": minMemoryBytes})
	got := mustDo(t, b, s, logical.ReadOperation, "catalog/container/r", nil).Data
	if got["oci_runtime"] != "runsc" || got["cpu_nanos"] != int64(0) || got["rootless"] != false || got["memory_bytes"] != int64(minMemoryBytes) {
		t.Fatalf("fields left out must reset: %#v", got)
	}
}

func TestRuntimePatchChangesOnlySentFields(t *testing.T) {
	b, s := newTestBackend(t)
	mustDo(t, b, s, logical.UpdateOperation, "catalog/container/r", map[string]interface{}{
		"oci_runtime": "runc", "cpu_nanos": 50000000, "cgroup_parent": "vault.slice",
	})
	mustDo(t, b, s, logical.PatchOperation, "catalog/container/r", map[string]interface{}{"cpu_nanos": 70000000, "cgroup_parent": nil})
	got := mustDo(t, b, s, logical.ReadOperation, "catalog/container/r", nil).Data
	if got["oci_runtime"] != "runc" || got["cpu_nanos"] != int64(70000000) || got["cgroup_parent"] != "" {
		t.Fatalf("patch: %#v", got)
	}

	// A rejected patch changes nothing.
	msg := errorOf(t, b, s, logical.PatchOperation, "catalog/container/r", map[string]interface{}{"cpu_nanos": 90000000, "memory_bytes": -1})
	if msg != "runtime memory in bytes cannot be negative" {
		t.Fatalf("error = %q", msg)
	}
	if got := mustDo(t, b, s, logical.ReadOperation, "catalog/container/r", nil).Data; got["cpu_nanos"] != int64(70000000) {
		t.Fatalf("rejected patch changed the runtime: %#v", got)
	}
}

func TestRuntimePatchMissingIs404(t *testing.T) {
	b, s := newTestBackend(t)
	_, err := do(t, b, s, logical.PatchOperation, "catalog/container/nope", map[string]interface{}{"cpu_nanos": 10000000})
	var coded logical.HTTPCodedError
	if !errors.As(err, &coded) || coded.Code() != http.StatusNotFound {
		t.Fatalf("want a 404, got %v", err)
	}
	if resp := mustDo(t, b, s, logical.ReadOperation, "catalog/container/nope", nil); resp != nil {
		t.Fatalf("patch must not create: %#v", resp)
	}
}

func TestRuntimeWriteErrors(t *testing.T) {
	long := strings.Repeat("a", maxNameLength+1)
	cases := []struct {
		path string
		data map[string]interface{}
		want string
	}{
		{"catalog/foo/r", nil, `"foo" is not a supported plugin runtime type`},
		{"catalog/Container/r", nil, `"Container" is not a supported plugin runtime type`},
		{"catalog/container/-bad", nil, `invalid runtime name "-bad": a name has at most 128 characters, letters, digits and '_', with '-' and '.' allowed only inside it, and no '..'`},
		{"catalog/container/bad.", nil, `invalid runtime name "bad.": a name has at most 128 characters, letters, digits and '_', with '-' and '.' allowed only inside it, and no '..'`},
		{"catalog/container/a/b", nil, `invalid runtime name "a/b": a name has at most 128 characters, letters, digits and '_', with '-' and '.' allowed only inside it, and no '..'`},
		{"catalog/container/" + long, nil, `invalid runtime name "` + long + `": a name has at most 128 characters, letters, digits and '_', with '-' and '.' allowed only inside it, and no '..'`},
		{"catalog/container/r", map[string]interface{}{"cpu_nanos": -1}, "runtime cpu in nanos cannot be negative"},
		{"catalog/container/r", map[string]interface{}{"memory_bytes": -1}, "runtime memory in bytes cannot be negative"},
		{"catalog/container/r", map[string]interface{}{"memory_bytes": 1024}, "memory_bytes 1024 is too small: use 0 for no limit or at least 6291456 (6 MiB, Docker's minimum)"},
		{"catalog/container/r", map[string]interface{}{"cpu_nanos": "lots"}, `Field validation failed: error converting input for field "cpu_nanos": cannot parse '' as int: strconv.ParseInt: parsing "lots": invalid syntax`},
		{"catalog/container/r", map[string]interface{}{"oci_runtime": "/usr/bin/runsc"}, `oci_runtime "/usr/bin/runsc" is not a plain runtime name: at most 64 letters, digits, '_', '-' and '.', starting with a letter or digit (the name the Docker Engine knows the runtime by, e.g. runsc or runc)`},
		{"catalog/container/r", map[string]interface{}{"oci_runtime": "runsc --debug"}, `oci_runtime "runsc --debug" is not a plain runtime name: at most 64 letters, digits, '_', '-' and '.', starting with a letter or digit (the name the Docker Engine knows the runtime by, e.g. runsc or runc)`},
		{"catalog/container/r", map[string]interface{}{"cgroup_parent": "/a/../b"}, `cgroup_parent "/a/../b" is neither a cgroup path (e.g. /vault-plugins/, components of letters, digits, '_', '-', '.', ':' and '@' without '.' or '..') nor a systemd slice (e.g. vault-plugins.slice), at most 255 characters`},
		{"catalog/container/r", map[string]interface{}{"cgroup_parent": "a//b"}, `cgroup_parent "a//b" is neither a cgroup path (e.g. /vault-plugins/, components of letters, digits, '_', '-', '.', ':' and '@' without '.' or '..') nor a systemd slice (e.g. vault-plugins.slice), at most 255 characters`},
		{"catalog/container/r", map[string]interface{}{"cgroup_parent": "my slice.slice"}, `cgroup_parent "my slice.slice" is neither a cgroup path (e.g. /vault-plugins/, components of letters, digits, '_', '-', '.', ':' and '@' without '.' or '..') nor a systemd slice (e.g. vault-plugins.slice), at most 255 characters`},
	}
	for _, tc := range cases {
		t.Run(tc.path+fmt.Sprint(tc.data), func(t *testing.T) {
			b, s := newTestBackend(t)
			if got := errorOf(t, b, s, logical.UpdateOperation, tc.path, tc.data); got != tc.want {
				t.Fatalf("error:\n got %s\nwant %s", got, tc.want)
			}
			keys, err := s.List(context.Background(), "")
			if err != nil || len(keys) != 0 {
				t.Fatalf("a rejected write stored something: %v %v", keys, err)
			}
		})
	}
}

func TestRuntimeAcceptedValues(t *testing.T) {
	for _, data := range []map[string]interface{}{
		{"cgroup_parent": "/examplelimit/"},
		{"cgroup_parent": "vault-plugins"},
		{"cgroup_parent": "/docker/vault/plugins"},
		{"cgroup_parent": "vault-plugins.slice"},
		{"oci_runtime": "io.containerd.runc.v2"},
		{"memory_bytes": minMemoryBytes},
		{"cpu_nanos": 10000000},
	} {
		b, s := newTestBackend(t)
		mustDo(t, b, s, logical.UpdateOperation, "catalog/container/a.b-c_d", data)
		got := mustDo(t, b, s, logical.ReadOperation, "catalog/container/a.b-c_d", nil).Data
		for field, want := range data {
			if fmt.Sprint(got[field]) != fmt.Sprint(want) {
				t.Errorf("%s: wrote %v, read back %v", field, want, got[field])
			}
		}
	}
}

func TestRuntimeReadAndDeleteMissing(t *testing.T) {
	b, s := newTestBackend(t)
	if resp := mustDo(t, b, s, logical.ReadOperation, "catalog/container/nope", nil); resp != nil {
		t.Fatalf("read missing: want nil (404), got %#v", resp)
	}
	if resp := mustDo(t, b, s, logical.DeleteOperation, "catalog/container/nope", nil); resp != nil {
		t.Fatalf("delete missing: want nil (204), got %#v", resp)
	}
	if got := errorOf(t, b, s, logical.ReadOperation, "catalog/runc/x", nil); got != `"runc" is not a supported plugin runtime type` {
		t.Fatalf("read bad type: %s", got)
	}
	if got := errorOf(t, b, s, logical.DeleteOperation, "catalog/container/x..", nil); !strings.HasPrefix(got, `invalid runtime name "x.."`) {
		t.Fatalf("delete bad name: %s", got)
	}
}

func TestRuntimeDelete(t *testing.T) {
	b, s := newTestBackend(t)
	mustDo(t, b, s, logical.UpdateOperation, "catalog/container/r", nil)
	mustDo(t, b, s, logical.DeleteOperation, "catalog/container/r", nil)
	if resp := mustDo(t, b, s, logical.ReadOperation, "catalog/container/r", nil); resp != nil {
		t.Fatalf("deleted runtime still reads: %#v", resp)
	}
	if se, _ := s.Get(context.Background(), runtimeKey("r")); se != nil {
		t.Fatal("deleted runtime still stored")
	}
}

func TestRuntimeWarnings(t *testing.T) {
	b, s := newTestBackend(t)
	resp := mustDo(t, b, s, logical.UpdateOperation, "catalog/container/r", map[string]interface{}{
		"rootless": true, "cpu_nanos": 10000000000, "colour": "blue",
	})
	want := []string{
		"Endpoint ignored these unrecognized parameters: [colour]",
		"cgroup limits (cgroup_parent, cpu_nanos, memory_bytes) are not supported with rootless Docker and the runsc runtime; they may be ignored or make the plugin fail to start",
	}
	if resp == nil || !sameStrings(resp.Warnings, want) {
		t.Fatalf("warnings = %#v, want %#v", resp, want)
	}
	if resp := mustDo(t, b, s, logical.UpdateOperation, "catalog/container/r", map[string]interface{}{"rootless": true}); resp != nil {
		t.Fatalf("rootless without limits must not warn: %#v", resp)
	}
}

func sameStrings(a, b []string) bool {
	seen := map[string]int{}
	for _, s := range a {
		seen[s]++
	}
	for _, s := range b {
		seen[s]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return len(a) == len(b)
}

func TestRuntimeList(t *testing.T) {
	b, s := newTestBackend(t)
	for _, path := range []string{"catalog", "catalog/"} {
		for _, op := range []logical.Operation{logical.ListOperation, logical.ReadOperation} {
			got := mustDo(t, b, s, op, path, nil).Data
			if rs, ok := got["runtimes"].([]interface{}); !ok || len(rs) != 0 || len(listKeys(t, got)) != 0 {
				t.Fatalf("%s %s on empty catalog: %#v, want runtimes []", op, path, got)
			}
		}
	}

	for _, name := range []string{"zeta", "alpha", "mid"} {
		mustDo(t, b, s, logical.UpdateOperation, "catalog/container/"+name, map[string]interface{}{"cpu_nanos": len(name) * minNanoCPUs})
	}
	for _, tc := range []struct {
		op   logical.Operation
		path string
		data map[string]interface{}
	}{
		{logical.ListOperation, "catalog/", nil},
		{logical.ReadOperation, "catalog", nil},
		{logical.ListOperation, "catalog/", map[string]interface{}{"type": "container"}},
		{logical.ListOperation, "catalog/container/", nil},
	} {
		got := mustDo(t, b, s, tc.op, tc.path, tc.data).Data
		if keys := listKeys(t, got); !reflect.DeepEqual(keys, []string{"alpha", "mid", "zeta"}) {
			t.Fatalf("%s %s: keys = %v", tc.op, tc.path, keys)
		}
		runtimes := got["runtimes"].([]interface{})
		want := map[string]interface{}{
			"name": "zeta", "type": "container", "oci_runtime": "runsc", "cgroup_parent": "",
			"cpu_nanos": float64(40000000), "memory_bytes": float64(0), "rootless": false,
		}
		if len(runtimes) != 3 || runtimes[0].(map[string]interface{})["name"] != "alpha" || !reflect.DeepEqual(runtimes[2], want) {
			t.Fatalf("%s %s: runtimes = %#v", tc.op, tc.path, runtimes)
		}
		info := got["key_info"].(map[string]interface{})
		if !reflect.DeepEqual(info["mid"], map[string]interface{}{"oci_runtime": "runsc"}) || len(info) != 3 {
			t.Fatalf("key_info = %#v", info)
		}
	}

	if got := errorOf(t, b, s, logical.ListOperation, "catalog/", map[string]interface{}{"type": "foo"}); got != `"foo" is not a supported plugin runtime type` {
		t.Fatalf("list ?type=foo: %s", got)
	}
	if got := errorOf(t, b, s, logical.ListOperation, "catalog/Container/", nil); got != `"Container" is not a supported plugin runtime type` {
		t.Fatalf("list catalog/Container: %s", got)
	}
}

// A wrapped list is a raw body of Vault's envelope, which Vault stores in
// the wrapping token and answers the unwrap with: the same keys, key_info
// and runtimes as an unwrapped list.
func TestRuntimeListWrapped(t *testing.T) {
	b, s := newTestBackend(t)
	mustDo(t, b, s, logical.UpdateOperation, "catalog/container/r", map[string]interface{}{"cpu_nanos": 30000000})
	req := &logical.Request{ID: "id", Operation: logical.ListOperation, Path: "catalog/", Storage: s, WrapInfo: &logical.RequestWrapInfo{TTL: 60}}
	resp, err := b.HandleRequest(context.Background(), req)
	if err != nil || resp == nil {
		t.Fatal(resp, err)
	}
	if _, ok := resp.Data["keys"]; ok {
		t.Fatal("a wrapped list carries keys: Vault cannot wrap them from an external plugin")
	}
	envelope := rawEnvelope(t, resp)
	if envelope.RequestID != "id" || !reflect.DeepEqual(envelope.Data["keys"], []interface{}{"r"}) {
		t.Fatalf("wrapped list = %#v", envelope)
	}
	if rs := envelope.Data["runtimes"].([]interface{}); rs[0].(map[string]interface{})["cpu_nanos"] != float64(30000000) {
		t.Fatalf("runtimes = %#v", rs)
	}
	if info := envelope.Data["key_info"].(map[string]interface{}); !reflect.DeepEqual(info["r"], map[string]interface{}{"oci_runtime": "runsc"}) {
		t.Fatalf("key_info = %#v", info)
	}
	// An empty list stays as it is, for Vault to answer 404 as for its own.
	mustDo(t, b, s, logical.DeleteOperation, "catalog/container/r", nil)
	if resp, err := b.HandleRequest(context.Background(), req); err != nil || resp.Data[logical.HTTPRawBody] != nil {
		t.Fatalf("an empty wrapped list: %#v %v", resp, err)
	}
}

// rawEnvelope decodes a raw JSON body of Vault's response envelope.
func rawEnvelope(t *testing.T, resp *logical.Response) logical.HTTPResponse {
	t.Helper()
	raw, ok := resp.Data[logical.HTTPRawBody].(string)
	if !ok || resp.Data[logical.HTTPContentType] != "application/json" {
		t.Fatalf("not a raw JSON body: %#v", resp.Data)
	}
	body, err := base64.StdEncoding.DecodeString(raw)
	var envelope logical.HTTPResponse
	if err != nil || json.Unmarshal(body, &envelope) != nil {
		t.Fatalf("raw body %q: %v", raw, err)
	}
	return envelope
}

// The encoded list follows every change: writes, deletes and invalidations.
func TestRuntimeListFollowsChanges(t *testing.T) {
	b, s := newTestBackend(t)
	ctx := context.Background()
	keys := func() []string { return listKeys(t, mustDo(t, b, s, logical.ListOperation, "catalog/", nil).Data) }
	mustDo(t, b, s, logical.UpdateOperation, "catalog/container/a", nil)
	if got := keys(); !reflect.DeepEqual(got, []string{"a"}) {
		t.Fatalf("keys = %v", got)
	}
	mustDo(t, b, s, logical.UpdateOperation, "catalog/container/b", nil)
	mustDo(t, b, s, logical.DeleteOperation, "catalog/container/a", nil)
	if got := keys(); !reflect.DeepEqual(got, []string{"b"}) {
		t.Fatalf("keys = %v", got)
	}
	storeRuntimeBehindTheBackend(t, s, newRuntimeEntry("c"))
	b.InvalidateKey(ctx, runtimeKey("c"))
	if got := keys(); !reflect.DeepEqual(got, []string{"b", "c"}) {
		t.Fatalf("keys after invalidation = %v", got)
	}
	mustDo(t, b, s, logical.PatchOperation, "catalog/container/c", map[string]interface{}{"cpu_nanos": 90000000})
	rs := mustDo(t, b, s, logical.ReadOperation, "catalog", nil).Data["runtimes"].([]interface{})
	if rs[1].(map[string]interface{})["cpu_nanos"] != float64(90000000) {
		t.Fatalf("list after patch: %#v", rs)
	}
}

func TestRootPathsNeedSudo(t *testing.T) {
	b, _ := newTestBackend(t)
	want := []string{"catalog", "catalog/*"}
	for _, p := range want {
		if !containsString(b.SpecialPaths().Root, p) {
			t.Fatalf("root paths %v lack %q", b.SpecialPaths().Root, p)
		}
	}
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestRuntimeConcurrentWritesLoseNothing(t *testing.T) {
	b, s := newTestBackend(t)
	const n = 200
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			req := &logical.Request{Operation: logical.UpdateOperation, Path: fmt.Sprintf("catalog/container/r%03d", i),
				Storage: s, Data: map[string]interface{}{"cpu_nanos": i * minNanoCPUs}}
			if resp, err := b.HandleRequest(context.Background(), req); err != nil || resp != nil {
				t.Errorf("write %d: %v %#v", i, err, resp) // Errorf, not Fatal: this is another goroutine
			}
		}(i)
	}
	wg.Wait()

	keys, err := s.List(context.Background(), runtimeStoragePrefix)
	if err != nil || len(keys) != n {
		t.Fatalf("stored %d runtimes (err %v), want %d", len(keys), err, n)
	}
	listed := listKeys(t, mustDo(t, b, s, logical.ListOperation, "catalog/", nil).Data)
	if len(listed) != n {
		t.Fatalf("listed %d runtimes, want %d", len(listed), n)
	}
	assertIndexMatchesStorage(t, b, s)
}

// assertIndexMatchesStorage compares the backend's catalog with a fresh load
// of storage.
func assertIndexMatchesStorage(t *testing.T, b *backend, s logical.Storage) {
	t.Helper()
	ctx := context.Background()
	fresh := newCatalog(s)
	for _, c := range []*catalog{fresh, b.catalog} {
		if err := c.ensure(ctx); err != nil {
			t.Fatal(err)
		}
	}
	got, _, _ := b.catalog.Runtimes(ctx)
	want, _, _ := fresh.Runtimes(ctx)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("index holds runtimes %v, storage %v", got, want)
	}
	gotPlugins, _ := b.catalog.Plugins(ctx)
	wantPlugins, _ := fresh.Plugins(ctx)
	if !reflect.DeepEqual(gotPlugins, wantPlugins) {
		t.Fatalf("index holds plugins %v, storage %v", gotPlugins, wantPlugins)
	}
	for _, r := range want {
		gotUsers, _ := b.catalog.PluginsUsing(ctx, r.Name)
		wantUsers, _ := fresh.PluginsUsing(ctx, r.Name)
		if !reflect.DeepEqual(gotUsers, wantUsers) {
			t.Fatalf("runtime %s: index says used by %v, storage %v", r.Name, gotUsers, wantUsers)
		}
	}
}

// storeBehindTheBackend writes storage directly, as another node would.
func storeBehindTheBackend(t *testing.T, s logical.Storage, key string, v interface{}) {
	t.Helper()
	se, err := logical.StorageEntryJSON(key, v)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(context.Background(), se); err != nil {
		t.Fatal(err)
	}
}

func storeRuntimeBehindTheBackend(t *testing.T, s logical.Storage, r *runtimeEntry) {
	t.Helper()
	storeBehindTheBackend(t, s, runtimeKey(r.Name), storedRuntime{runtimeEntryFormat, r})
}

func TestIndexFollowsInvalidation(t *testing.T) {
	b, s := newTestBackend(t)
	ctx := context.Background()
	mustDo(t, b, s, logical.UpdateOperation, "catalog/container/kept", map[string]interface{}{"cpu_nanos": 10000000})
	mustDo(t, b, s, logical.UpdateOperation, "catalog/container/gone", nil)

	// Another node writes storage directly and Vault invalidates the keys.
	kept := newRuntimeEntry("kept")
	kept.NanoCPUs = 2
	storeRuntimeBehindTheBackend(t, s, kept)
	storeRuntimeBehindTheBackend(t, s, newRuntimeEntry("new"))
	if err := s.Delete(ctx, runtimeKey("gone")); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"runtime/container/kept", "runtime/container/new", "runtime/container/gone", "unrelated"} {
		b.InvalidateKey(ctx, key)
	}

	if got := mustDo(t, b, s, logical.ReadOperation, "catalog/container/kept", nil).Data["cpu_nanos"]; got != int64(2) {
		t.Fatalf("kept cpu_nanos = %v after invalidation, want 2", got)
	}
	keys := listKeys(t, mustDo(t, b, s, logical.ListOperation, "catalog/", nil).Data)
	if !reflect.DeepEqual(keys, []string{"kept", "new"}) {
		t.Fatalf("keys after invalidation = %v", keys)
	}
	assertIndexMatchesStorage(t, b, s)
}

func TestStoredFormatIsVersioned(t *testing.T) {
	b, s := newTestBackend(t)
	ctx := context.Background()
	if err := s.Put(ctx, &logical.StorageEntry{Key: "runtime/container/future", Value: []byte(`{"format":2,"name":"future"}`)}); err != nil {
		t.Fatal(err)
	}
	_, err := do(t, b, s, logical.ReadOperation, "catalog/container/future", nil)
	want := `runtime "runtime/container/future" is stored in format 2; this plugin reads format 1`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
}

// Every settable field is applied by a write and a patch, and reads back:
// a field with a schema that no code applies fails here.
func TestEverySettableFieldIsApplied(t *testing.T) {
	b, s := newTestBackend(t)
	mustDo(t, b, s, logical.UpdateOperation, "catalog/container/rt", nil)
	// A value for each field type that differs from its zero value and
	// passes validation.
	runtimeValues := map[string]interface{}{
		"oci_runtime": "runc", "cgroup_parent": "/x/", "cpu_nanos": int64(70000000), "memory_bytes": int64(minMemoryBytes), "rootless": true,
		"network": true, "engine": "unix:///run/podman/podman.sock",
	}
	pluginValues := map[string]interface{}{
		"oci_image": "example/kv", "version": "1.2.3", "sha256": testSHA, "command": "/kv",
		"args": []string{"-x"}, "env": []string{"K=v"}, "runtime": "rt",
		"pull_policy": "missing", "image_digest": "sha256:" + strings.Repeat("5b", 32),
	}
	for _, tc := range []struct {
		path    string
		schemas map[string]*framework.FieldSchema
		values  map[string]interface{}
		base    map[string]interface{}
	}{
		{"catalog/container/r", runtimeFieldSchemas(), runtimeValues, nil},
		{"plugins/catalog/secret/p", pluginFieldSchemas(), pluginValues, pluginData(nil)},
	} {
		if len(tc.values) != len(tc.schemas) {
			t.Fatalf("%s: the test has values for %d fields, the schema %d: add the new field here", tc.path, len(tc.values), len(tc.schemas))
		}
		for field := range tc.schemas {
			for _, op := range []logical.Operation{logical.UpdateOperation, logical.PatchOperation} {
				mustDo(t, b, s, logical.UpdateOperation, tc.path, tc.base)
				data := map[string]interface{}{field: tc.values[field]}
				if op == logical.UpdateOperation { // a full write: the rest as before
					data = map[string]interface{}{}
					for k, v := range tc.base {
						data[k] = v
					}
					data[field] = tc.values[field]
				}
				if field == "pull_policy" {
					data["sha256"] = testSHA // pulling needs the ID to check against
				}
				mustDo(t, b, s, op, tc.path, data)
				got := mustDo(t, b, s, logical.ReadOperation, tc.path, nil).Data[field]
				want := tc.values[field]
				if field == "env" {
					want = []string{"K"} // reads show the names only
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s %s %s=%v: read back %#v", op, tc.path, field, tc.values[field], got)
				}
			}
		}
		mustDo(t, b, s, logical.DeleteOperation, tc.path, nil)
	}
}

// A runtime reads the same in a list (view, encoded once per change) as on
// its own (toResponseData): the two forms cannot drift apart.
func TestRuntimeViewMatchesResponseData(t *testing.T) {
	limited := newRuntimeEntry("b")
	limited.OCIRuntime, limited.CgroupParent, limited.NanoCPUs, limited.MemoryBytes, limited.Rootless = "runc", "/x/", 1, minMemoryBytes, true
	for _, r := range []*runtimeEntry{newRuntimeEntry("a"), limited} {
		encoded, err := encodeRuntimeList([]*runtimeEntry{r})
		if err != nil {
			t.Fatal(err)
		}
		body := encoded
		var list struct {
			Runtimes []json.RawMessage `json:"runtimes"`
		}
		if err := json.NewDecoder(bytes.NewReader(body)).Decode(&list); err != nil {
			t.Fatal(err)
		}
		fromView := list.Runtimes[0]
		if err != nil {
			t.Fatal(err)
		}
		var got, want map[string]interface{}
		if err := json.Unmarshal(fromView, &got); err != nil {
			t.Fatal(err)
		}
		fromData, _ := json.Marshal(r.toResponseData())
		if err := json.Unmarshal(fromData, &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("view %v != response data %v", got, want)
		}
	}
}
