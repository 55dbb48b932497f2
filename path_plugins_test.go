package runtimecatalog

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

const testSHA = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func pluginData(extra map[string]interface{}) map[string]interface{} {
	data := map[string]interface{}{"oci_image": "example/kv-plugin", "version": "v1.2.3"}
	for k, v := range extra {
		data[k] = v
	}
	return data
}

func TestPluginWriteReadAllFields(t *testing.T) {
	b, s := newTestBackend(t)
	mustDo(t, b, s, logical.UpdateOperation, "catalog/container/limited", nil)
	mustDo(t, b, s, logical.UpdateOperation, "plugins/catalog/secret/kv", pluginData(map[string]interface{}{
		"sha256":  "sha256:" + strings.ToUpper(testSHA),
		"command": "/bin/kv",
		"args":    []string{"-debug", "a,b"},
		"env":     []string{"TOKEN=secret-value", "EMPTY="},
		"runtime": "limited",
	}))
	got := mustDo(t, b, s, logical.ReadOperation, "plugins/catalog/secret/kv", nil).Data
	want := map[string]interface{}{
		"name": "kv", "type": "secret", "oci_image": "example/kv-plugin", "version": "v1.2.3",
		"sha256": testSHA, "command": "/bin/kv", "args": []string{"-debug", "a,b"},
		"env": []string{"TOKEN", "EMPTY"}, "runtime": "limited",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("read:\n got %#v\nwant %#v", got, want)
	}
	if strings.Contains(fmt.Sprint(got), "secret-value") {
		t.Fatal("a read returned an env value")
	}
}

func TestPluginWriteErrors(t *testing.T) {
	cases := []struct {
		path string
		data map[string]interface{}
		want string
	}{
		{"plugins/catalog/builtin/p", pluginData(nil), `"builtin" is not a supported plugin type: use one of auth, database, secret`},
		{"plugins/catalog/secret/p.", pluginData(nil), `invalid plugin name "p.": a name has at most 128 characters, letters, digits and '_', with '-' and '.' allowed only inside it, and no '..'`},
		{"plugins/catalog/secret/p", map[string]interface{}{"version": "1.0.0"}, "oci_image is required: the image to run, without a tag"},
		{"plugins/catalog/secret/p", pluginData(map[string]interface{}{"oci_image": "example/kv:1.0.0"}), `oci_image "example/kv:1.0.0" carries a tag: give the image without it, the tag comes from version`},
		{"plugins/catalog/secret/p", pluginData(map[string]interface{}{"oci_image": "Example/KV"}), `oci_image "Example/KV" is not an image name (lower-case letters, digits and separators, optionally after a registry host and port, e.g. registry.example.com/team/plugin or 127.0.0.1:5000/plugin)`},
		{"plugins/catalog/secret/p", pluginData(map[string]interface{}{"oci_image": "example/kv@sha256"}), `oci_image "example/kv@sha256" is not an image name (lower-case letters, digits and separators, optionally after a registry host and port, e.g. registry.example.com/team/plugin or 127.0.0.1:5000/plugin)`},
		{"plugins/catalog/secret/p", pluginData(map[string]interface{}{"pull_policy": "always"}), `pull_policy "always" is not a pull policy: use "never" (the default: the image must be on the engine) or "missing" (pulled when the engine lacks it, then checked against sha256)`},
		{"plugins/catalog/secret/p", pluginData(map[string]interface{}{"pull_policy": "missing"}), `pull_policy missing needs sha256, the image ID a pulled image is checked against (docker images --no-trunc -q IMAGE): a pull is never taken on trust`},
		{"plugins/catalog/secret/p", pluginData(map[string]interface{}{"image_digest": "5b81"}), `image_digest "5b81" is not a manifest digest: "sha256:" and 64 lower-case hex characters, as the registry gives it (docker push prints it; RepoDigests shows it)`},
		{"plugins/catalog/secret/p", pluginData(map[string]interface{}{"oci_image": "127.0.0.1:5000/kv@sha256:" + strings.Repeat("ab", 32)}), `oci_image "127.0.0.1:5000/kv@sha256:` + strings.Repeat("ab", 32) + `" carries a digest: give the image without it, and the manifest digest as image_digest`},
		{"plugins/catalog/secret/p", map[string]interface{}{"oci_image": "example/kv"}, `version is required: the image tag is the version without its leading "v"`},
		{"plugins/catalog/secret/p", pluginData(map[string]interface{}{"version": "latest"}), `version "latest" is not a semantic version: malformed version: latest`},
		{"plugins/catalog/secret/p", pluginData(map[string]interface{}{"version": "1.2.3.4"}), `version "1.2.3.4" is not a semantic version: it has 4 numbers, at most 3 (MAJOR.MINOR.PATCH)`},
		{"plugins/catalog/secret/p", pluginData(map[string]interface{}{"sha256": "abc"}), `sha256 "abc" is not a SHA-256 image ID: 64 hex characters, optionally prefixed with "sha256:"`},
		{"plugins/catalog/secret/p", pluginData(map[string]interface{}{"sha256": "sha256:" + strings.Repeat("g", 64)}), `sha256 "sha256:` + strings.Repeat("g", 64) + `" is not a SHA-256 image ID: 64 hex characters, optionally prefixed with "sha256:"`},
		{"plugins/catalog/secret/p", pluginData(map[string]interface{}{"env": []string{"NOVALUE"}}), `env entry "NOVALUE" is not KEY=VALUE with a non-empty KEY`},
		{"plugins/catalog/secret/p", pluginData(map[string]interface{}{"env": []string{"=x"}}), `env entry "=x" is not KEY=VALUE with a non-empty KEY`},
		{"plugins/catalog/secret/p", pluginData(map[string]interface{}{"runtime": "missing"}), `plugin runtime "missing" does not exist`},
		{"plugins/catalog/secret/p", pluginData(map[string]interface{}{"runtime": "bad/name"}), `invalid runtime name "bad/name": a name has at most 128 characters, letters, digits and '_', with '-' and '.' allowed only inside it, and no '..'`},
	}
	for _, tc := range cases {
		t.Run(tc.path+fmt.Sprint(tc.data), func(t *testing.T) {
			b, s := newTestBackend(t)
			if got := errorOf(t, b, s, logical.UpdateOperation, tc.path, tc.data); got != tc.want {
				t.Fatalf("error:\n got %s\nwant %s", got, tc.want)
			}
			if keys, _ := s.List(context.Background(), pluginStoragePrefix+"secret/"); len(keys) != 0 {
				t.Fatalf("a rejected write stored %v", keys)
			}
		})
	}
}

func TestPluginPatch(t *testing.T) {
	b, s := newTestBackend(t)
	mustDo(t, b, s, logical.UpdateOperation, "catalog/container/rt", nil)
	mustDo(t, b, s, logical.UpdateOperation, "plugins/catalog/auth/p", pluginData(map[string]interface{}{"env": []string{"A=1"}}))
	mustDo(t, b, s, logical.PatchOperation, "plugins/catalog/auth/p", map[string]interface{}{"version": "2.0.0", "runtime": "rt"})
	got := mustDo(t, b, s, logical.ReadOperation, "plugins/catalog/auth/p", nil).Data
	if got["version"] != "2.0.0" || got["runtime"] != "rt" || got["oci_image"] != "example/kv-plugin" || !reflect.DeepEqual(got["env"], []string{"A"}) {
		t.Fatalf("patched: %#v", got)
	}
	if msg := errorOf(t, b, s, logical.PatchOperation, "plugins/catalog/auth/p", map[string]interface{}{"runtime": "nope"}); msg != `plugin runtime "nope" does not exist` {
		t.Fatalf("patch to a missing runtime: %s", msg)
	}
	if _, err := do(t, b, s, logical.PatchOperation, "plugins/catalog/auth/missing", map[string]interface{}{"version": "1.0.0"}); err == nil {
		t.Fatal("patching a missing plugin must fail with a 404")
	}
}

func TestRuntimeInUseCannotBeDeleted(t *testing.T) {
	b, s := newTestBackend(t)
	mustDo(t, b, s, logical.UpdateOperation, "catalog/container/shared", nil)
	mustDo(t, b, s, logical.UpdateOperation, "plugins/catalog/secret/a", pluginData(map[string]interface{}{"runtime": "shared"}))
	mustDo(t, b, s, logical.UpdateOperation, "plugins/catalog/auth/b", pluginData(map[string]interface{}{"runtime": "shared"}))
	mustDo(t, b, s, logical.UpdateOperation, "plugins/catalog/secret/b", pluginData(map[string]interface{}{"runtime": "shared"}))
	mustDo(t, b, s, logical.UpdateOperation, "plugins/catalog/secret/other", pluginData(nil))

	got := mustDo(t, b, s, logical.ReadOperation, "catalog/container/shared", nil).Data["plugins"]
	if !reflect.DeepEqual(got, []string{"secret/a", "auth/b", "secret/b"}) {
		t.Fatalf("plugins = %v", got)
	}
	msg := errorOf(t, b, s, logical.DeleteOperation, "catalog/container/shared", nil)
	if want := `unable to delete "shared" runtime. Registered plugins=[secret/a auth/b secret/b] are referencing it.`; msg != want {
		t.Fatalf("error:\n got %s\nwant %s", msg, want)
	}

	// Moving or deleting the plugins frees the runtime.
	mustDo(t, b, s, logical.PatchOperation, "plugins/catalog/secret/a", map[string]interface{}{"runtime": nil})
	mustDo(t, b, s, logical.DeleteOperation, "plugins/catalog/auth/b", nil)
	mustDo(t, b, s, logical.DeleteOperation, "plugins/catalog/secret/b", nil)
	mustDo(t, b, s, logical.DeleteOperation, "catalog/container/shared", nil)
	mustDo(t, b, s, logical.DeleteOperation, "plugins/catalog/secret/b", nil) // missing: 204
}

func TestPluginList(t *testing.T) {
	b, s := newTestBackend(t)
	empty := mustDo(t, b, s, logical.ListOperation, "plugins/catalog/", nil).Data
	if ps := empty["plugins"].([]map[string]interface{}); len(ps) != 0 {
		t.Fatalf("empty list: %#v", empty)
	}
	for _, id := range []string{"secret/zz", "auth/aa", "secret/aa", "database/db"} {
		mustDo(t, b, s, logical.UpdateOperation, "plugins/catalog/"+id, pluginData(nil))
	}
	all := mustDo(t, b, s, logical.ReadOperation, "plugins/catalog", nil).Data
	if keys := all["keys"]; !reflect.DeepEqual(keys, []string{"auth/aa", "database/db", "secret/aa", "secret/zz"}) {
		t.Fatalf("keys = %v", keys)
	}
	secrets := mustDo(t, b, s, logical.ListOperation, "plugins/catalog/secret/", nil).Data
	if keys := secrets["keys"]; !reflect.DeepEqual(keys, []string{"aa", "zz"}) {
		t.Fatalf("secret keys = %v", keys)
	}
	if info := secrets["key_info"].(map[string]interface{})["zz"].(map[string]interface{}); info["type"] != "secret" {
		t.Fatalf("key_info = %#v", info)
	}
	if msg := errorOf(t, b, s, logical.ListOperation, "plugins/catalog/nope/", nil); msg != `"nope" is not a supported plugin type: use one of auth, database, secret` {
		t.Fatalf("list bad type: %s", msg)
	}
}

// Registrations and runtime deletions race; afterwards every plugin's runtime
// must exist, in the index and in storage. Each runtime is created once and
// deleted once, so nothing can recreate a runtime and hide a plugin that was
// stored after its runtime's deletion.
func TestPluginRegistrationRacesRuntimeDeletion(t *testing.T) {
	b, s := newTestBackend(t)
	ctx := context.Background()
	const rounds = 100
	for i := 0; i < rounds; i++ {
		mustDo(t, b, s, logical.UpdateOperation, fmt.Sprintf("catalog/container/rt%d", i), nil)
	}
	// Every response is looked at, in this goroutine: a success, or the one
	// refusal each side may meet; anything else (a 500) fails the test.
	type outcome struct {
		what string
		resp *logical.Response
		err  error
	}
	outcomes := make(chan outcome, 3*rounds)
	send := func(what string, req *logical.Request) {
		req.Storage = s
		resp, err := b.HandleRequest(ctx, req)
		outcomes <- outcome{what, resp, err}
	}
	for i := 0; i < rounds; i++ {
		rt := fmt.Sprintf("rt%d", i)
		for _, plugin := range []string{fmt.Sprintf("p%da", i), fmt.Sprintf("p%db", i)} {
			go send("register "+plugin+" with "+rt, &logical.Request{Operation: logical.UpdateOperation,
				Path: "plugins/catalog/secret/" + plugin, Data: pluginData(map[string]interface{}{"runtime": rt})})
		}
		go send("delete "+rt, &logical.Request{Operation: logical.DeleteOperation, Path: "catalog/container/" + rt})
	}
	for i := 0; i < 3*rounds; i++ {
		o := <-outcomes
		if o.err != nil {
			t.Errorf("%s: error %v", o.what, o.err)
			continue
		}
		if o.resp == nil {
			continue
		}
		msg := o.resp.Error().Error()
		if !strings.Contains(msg, "does not exist") && !strings.Contains(msg, "are referencing it") {
			t.Errorf("%s: unexpected answer %q", o.what, msg)
		}
	}

	fresh := newCatalog(s)
	plugins, err := fresh.Plugins(ctx)
	if err != nil {
		t.Fatal(err)
	}
	runtimes, _, _ := fresh.Runtimes(ctx)
	registered, deleted := len(plugins), rounds-len(runtimes)
	for _, p := range plugins {
		if r, _ := fresh.Runtime(ctx, p.Runtime); r == nil {
			t.Errorf("plugin %s references runtime %q, which is not stored", p.id(), p.Runtime)
		}
	}
	if registered == 0 || deleted == 0 {
		t.Fatalf("%d registrations and %d deletions won: the race proved nothing", registered, deleted)
	}
	assertIndexMatchesStorage(t, b, s)
}

func TestPluginIndexFollowsInvalidation(t *testing.T) {
	b, s := newTestBackend(t)
	ctx := context.Background()
	mustDo(t, b, s, logical.UpdateOperation, "catalog/container/rt", nil)
	mustDo(t, b, s, logical.UpdateOperation, "plugins/catalog/secret/p", pluginData(nil))
	p := newPluginEntry(pluginID{"secret", "p"})
	p.Image, p.Version, p.Runtime = "x", "1.0.0", "rt"
	storeBehindTheBackend(t, s, pluginKey(p.id()), storedPlugin{pluginEntryFormat, p})
	b.InvalidateKey(ctx, pluginKey(p.id()))
	if got := mustDo(t, b, s, logical.ReadOperation, "catalog/container/rt", nil).Data["plugins"]; !reflect.DeepEqual(got, []string{"secret/p"}) {
		t.Fatalf("after invalidation plugins = %v", got)
	}
	if err := s.Delete(ctx, pluginKey(p.id())); err != nil {
		t.Fatal(err)
	}
	b.InvalidateKey(ctx, pluginKey(p.id()))
	mustDo(t, b, s, logical.DeleteOperation, "catalog/container/rt", nil)
}
