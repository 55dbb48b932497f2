package runtimecatalog

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

func TestHostedPath(t *testing.T) {
	for path, want := range map[string][3]interface{}{
		"mounts/kv/data/x": {"kv", "data/x", true},
		"mounts/kv/":       {"kv", "", true},
		"mounts/kv":        {"", "", false}, // the mount's own settings
		"mounts/":          {"", "", false},
		"catalog/x":        {"", "", false},
	} {
		name, rest, ok := hostedPath(path)
		if name != want[0] || rest != want[1] || ok != want[2] {
			t.Errorf("%s: %q %q %v, want %v", path, name, rest, ok, want)
		}
	}
}

// Vault matches root paths by longest prefix, an exact entry overriding a
// shorter wildcard: this mirrors its matching (vault/router.go RootPath) to
// show which hosted paths need sudo.
func rootPath(roots []string, path string) bool {
	best, bestPrefix, found := "", false, false
	for _, r := range roots {
		prefix := len(r) > 0 && r[len(r)-1] == '*'
		key := r
		if prefix {
			key = r[:len(r)-1]
		}
		if len(key) <= len(path) && path[:len(key)] == key && (!found || len(key) > len(best)) {
			best, bestPrefix, found = key, prefix, true
		}
	}
	if !found {
		return false
	}
	return bestPrefix || best == path
}

func TestSpecialPathsOfHostedMounts(t *testing.T) {
	b, _ := newTestBackend(t)
	own := b.Backend.SpecialPaths()
	entries := []*mountEntry{
		{Name: "kv"},
		{Name: "pki", Paths: hostedPaths{Root: []string{"root/*", "admin"}, Unauthenticated: []string{"ca/pem"}}},
	}
	paths := b.host.SpecialPaths(own, entries)
	for path, sudo := range map[string]bool{
		"mounts":       true,
		"mounts/":      true,
		"mounts/kv":    true, // settings
		"mounts/new":   true, // a mount to create
		"mounts/new/x": true, // a mount Vault has not read: everything needs sudo
		// An exact entry matches itself too: the list of a mount's top
		// level needs sudo. ("mounts/kv" exact instead would lift sudo from
		// a new mount named "kvx": the safe way round.)
		"mounts/kv/":           true,
		"mounts/kv/data/x":     false,
		"mounts/pki/issue/x":   false,
		"mounts/pki/admin":     true,
		"mounts/pki/admin2":    false,
		"mounts/pki/root/sign": true,
		"catalog/container/x":  true,
		"plugins/reload":       true,
	} {
		if got := rootPath(paths.Root, path); got != sudo {
			t.Errorf("%s: sudo %v, want %v (root paths %v)", path, got, sudo, paths.Root)
		}
	}
	if !reflect.DeepEqual(paths.Unauthenticated, []string{"mounts/pki/ca/pem"}) {
		t.Errorf("unauthenticated = %v", paths.Unauthenticated)
	}
	if len(own.Root) != 10 {
		t.Errorf("the backend's own paths changed: %v", own.Root)
	}

	// Read by Vault now: pending only when its paths changed since.
	if b.host.pendingReload(entries[1]) || b.host.pendingPublish("kv") {
		t.Error("a mount Vault has read is pending")
	}
	changed := &mountEntry{Name: "pki", Paths: hostedPaths{Root: []string{"other"}}}
	if !b.host.pendingReload(changed) {
		t.Error("a mount whose root paths changed is not pending")
	}
	fresh := &mountEntry{Name: "new", Paths: hostedPaths{Root: []string{"admin"}}}
	if !b.host.pendingReload(fresh) || !b.host.pendingPublish("new") {
		t.Error("a new mount with root paths is not pending")
	}
	if b.host.pendingReload(&mountEntry{Name: "plain"}) {
		t.Error("a new mount without special paths is pending")
	}
}

func TestKVLeaseRule(t *testing.T) {
	for _, tc := range []struct {
		entry     *mountEntry
		snapshot  bool
		keepLease bool
	}{
		{&mountEntry{Plugin: "kv"}, false, false},
		{&mountEntry{Plugin: "kv", Options: map[string]string{"leased_passthrough": "true"}}, false, true},
		{&mountEntry{Plugin: "kv", Options: map[string]string{"leased_passthrough": "true"}}, true, false},
		{&mountEntry{Plugin: "other"}, false, true},
	} {
		if got := keepsLease(tc.entry, tc.snapshot); got != tc.keepLease {
			t.Errorf("%+v snapshot %v: keeps lease %v, want %v", tc.entry, tc.snapshot, got, tc.keepLease)
		}
	}
}

func TestRegistrationKeySharesOnlyIdenticalRegistrations(t *testing.T) {
	p := runtime.Plugin{Name: "kv", Type: "secret", Image: "kv", Version: "1.0.0"}
	r := runtime.Runtime{Name: "rt", OCIRuntime: "runc"}
	q, s := p, r
	if registrationKey(p, r) != registrationKey(q, s) {
		t.Fatal("identical registrations differ")
	}
	s.MemoryBytes = 1 << 30
	q.Env = []string{"A=1"}
	for _, other := range [][2]interface{}{{p, s}, {q, r}} {
		if registrationKey(other[0].(runtime.Plugin), other[1].(runtime.Runtime)) == registrationKey(p, r) {
			t.Errorf("%v shares a container with %v", other, p)
		}
	}
}

func TestCatalogMountRules(t *testing.T) {
	ctx := context.Background()
	s := &logical.InmemStorage{}
	c := newCatalog(s)
	started := 0
	start := func(m, _ *mountEntry) error { started++; m.UUID = "u"; return nil }
	build := func(plugin string) func(*mountEntry) (*mountEntry, error) {
		return func(*mountEntry) (*mountEntry, error) { return &mountEntry{Name: "m", Plugin: plugin}, nil }
	}
	if _, err := c.WriteMount(ctx, "m", build("kv"), start); !isRequestError(err,
		`no secret plugin "kv" is registered: register it at plugins/catalog/secret/kv`) {
		t.Fatalf("missing plugin: %v", err)
	}
	auth := pluginID{"auth", "kv"}
	c.WritePlugin(ctx, auth, newPluginBuilder(auth, ""))
	if _, err := c.WriteMount(ctx, "m", build("kv"), start); !isRequestError(err,
		`plugin "kv" is registered as auth, not secret: only secret plugins can be hosted, since this mount is a secrets engine `+
			`(Vault refuses auth from it, and database plugins speak another protocol)`) {
		t.Fatalf("auth plugin: %v", err)
	}
	kv := pluginID{"secret", "kv"}
	c.WritePlugin(ctx, kv, newPluginBuilder(kv, ""))
	failing := func(*mountEntry, *mountEntry) error {
		return badRequestf("plugin secret/kv did not start: missing image")
	}
	if _, err := c.WriteMount(ctx, "m", build("kv"), failing); err == nil {
		t.Fatal("a mount that did not start was accepted")
	}
	if keys, _ := s.List(ctx, mountStoragePrefix); len(keys) != 0 || started != 0 {
		t.Fatalf("a refused mount stored %v", keys)
	}
	if _, err := c.WriteMount(ctx, "m", build("kv"), start); err != nil || started != 1 {
		t.Fatalf("mount: %v (started %d)", err, started)
	}
	if err := c.DeletePlugin(ctx, kv); !isRequestError(err, "unable to delete plugin secret/kv. Hosted mounts=[m] are using it.") {
		t.Fatalf("deleting a hosted plugin: %v", err)
	}
	refuse := errors.New("leases outstanding")
	if err := c.DeleteMount(ctx, "m", func(*mountEntry) error { return refuse }); err != refuse {
		t.Fatalf("a refused stop: %v", err)
	}
	if m, _ := newCatalog(s).Mount(ctx, "m"); m == nil || m.UUID != "u" {
		t.Fatalf("a refused deletion lost the mount: %+v", m)
	}
	if err := c.DeleteMount(ctx, "m", func(*mountEntry) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := c.DeletePlugin(ctx, kv); err != nil {
		t.Fatalf("deleting a plugin no longer hosted: %v", err)
	}
}

func TestMountWriteErrors(t *testing.T) {
	b, s := newTestBackend(t)
	for _, tc := range []struct {
		path string
		data map[string]interface{}
		want string
	}{
		{"mounts/-x", map[string]interface{}{"plugin": "kv"}, `invalid mount name "-x": a name has at most 128 characters, letters, digits and '_', with '-' and '.' allowed only inside it, and no '..'`},
		{"mounts/m", nil, "plugin is required: the name of a registered secret plugin to host"},
		{"mounts/m", map[string]interface{}{"plugin": "a/b"}, `invalid plugin name "a/b": a name has at most 128 characters, letters, digits and '_', with '-' and '.' allowed only inside it, and no '..'`},
		{"mounts/m", map[string]interface{}{"plugin": "kv"}, `no secret plugin "kv" is registered: register it at plugins/catalog/secret/kv`},
	} {
		if got := errorOf(t, b, s, logical.UpdateOperation, tc.path, tc.data); got != tc.want {
			t.Errorf("%s %v:\n got %s\nwant %s", tc.path, tc.data, got, tc.want)
		}
	}
	if got := errorOf(t, b, s, logical.UpdateOperation, "plugins/reload", nil); got != "give either plugin (reload every mount of it) or mounts (a list of hosted mounts), not both" {
		t.Errorf("reload: %s", got)
	}
	resp, err := do(t, b, s, logical.ReadOperation, "mounts/nope/x", nil)
	var coded logical.HTTPCodedError
	if !errors.As(err, &coded) || coded.Code() != 404 || resp != nil {
		t.Errorf("a request to a missing hosted mount: %v %v", resp, err)
	}
	if keys := listKeys(t, mustDo(t, b, s, logical.ListOperation, "mounts/", nil).Data); len(keys) != 0 {
		t.Errorf("mounts = %v", keys)
	}
}
