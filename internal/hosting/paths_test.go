package hosting

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

func TestHostedPath(t *testing.T) {
	for path, want := range map[string][3]interface{}{
		"mounts/kv/data/x": {"kv", "data/x", true},
		"mounts/kv/":       {"kv", "", true},
		"mounts/kv":        {"kv", "", true}, // the plugin's root, as "kv" is for a Vault mount
		"mounts/":          {"", "", false},
		"mounts":           {"", "", false},
		"hosted/kv":        {"", "", false}, // the mount's settings
		"catalog/x":        {"", "", false},
	} {
		name, rest, ok := SplitPath(path)
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
	h := New(Config{})
	own := &logical.Paths{Root: []string{"catalog", "catalog/*", "hosted", "hosted/*", "plugins/reload"}}
	mounts := []*Mount{
		{Name: "kv"},
		{Name: "pki", Paths: Paths{Root: []string{"root/*", "admin"}, Unauthenticated: []string{"ca/pem"}}},
		{Name: "locked", Paths: Paths{Root: []string{"*"}}},
		{Name: "open", Paths: Paths{Unauthenticated: []string{""}}},
	}
	paths := h.SpecialPaths(own, mounts)
	for path, sudo := range map[string]bool{
		"hosted":               true,
		"hosted/kv":            true,  // settings
		"hosted/new":           true,  // a mount to create
		"mounts/new/x":         false, // a mount without special paths: the ACL alone
		"mounts/kv":            false,
		"mounts/kv/":           false,
		"mounts/kv/data/x":     false,
		"mounts/pki/issue/x":   false,
		"mounts/pki/admin":     true,
		"mounts/pki/admin2":    false,
		"mounts/pki/root/sign": true,
		"mounts/pkix/admin":    false,
		// A plugin whose every path needs sudo: its root without the slash too.
		"mounts/locked":       true,
		"mounts/locked/":      true,
		"mounts/locked/x":     true,
		"mounts/lockedx/y":    false,
		"catalog/container/x": true,
		"plugins/reload":      true,
	} {
		if got := rootPath(paths.Root, path); got != sudo {
			t.Errorf("%s: sudo %v, want %v (root paths %v)", path, got, sudo, paths.Root)
		}
	}
	if want := []string{"mounts/pki/ca/pem", "mounts/open/", "mounts/open"}; !reflect.DeepEqual(paths.Unauthenticated, want) {
		t.Errorf("unauthenticated = %v, want %v", paths.Unauthenticated, want)
	}
	if len(own.Root) != 5 {
		t.Errorf("the backend's own paths changed: %v", own.Root)
	}

	// Read by Vault now: pending only when its paths changed since.
	if h.published.pending(mounts[1]) || h.published.pending(mounts[0]) {
		t.Error("a mount Vault has read is pending")
	}
	changed := &Mount{Name: "pki", Paths: Paths{Root: []string{"other"}}}
	if !h.published.pending(changed) {
		t.Error("a mount whose root paths changed is not pending")
	}
	if !h.published.pending(&Mount{Name: "pki"}) {
		t.Error("a mount whose special paths shrank to none is not pending")
	}
	fresh := &Mount{Name: "new", Paths: Paths{Root: []string{"admin"}}}
	if !h.published.pending(fresh) {
		t.Error("a new mount with root paths is not pending")
	}
	if h.published.pending(&Mount{Name: "plain"}) {
		t.Error("a new mount without special paths is pending")
	}
}

// A Secret is a lease only when the plugin's framework issued it as one
// (its secret_type): kv's non-leased answer, under any name, is not.
func TestLeaseRule(t *testing.T) {
	for _, tc := range []struct {
		internal map[string]interface{}
		snapshot bool
		leased   bool
	}{
		{nil, false, false}, // kv without leased_passthrough: &logical.Secret{} with a TTL
		{map[string]interface{}{}, false, false},
		{map[string]interface{}{"secret_type": "kv"}, false, true}, // kv with leased_passthrough: b.Secret("kv").Response
		{map[string]interface{}{"secret_type": "creds", "user": "u"}, true, false},
	} {
		if got := leased(tc.internal, tc.snapshot); got != tc.leased {
			t.Errorf("%v snapshot %v: leased %v, want %v", tc.internal, tc.snapshot, got, tc.leased)
		}
		encoded, _ := json.Marshal(tc.internal)
		if got := leasedProto(string(encoded), tc.snapshot); got != tc.leased {
			t.Errorf("as protobuf %s snapshot %v: leased %v, want %v", encoded, tc.snapshot, got, tc.leased)
		}
	}
	if leasedProto(`{"note":"\"secret_type\""}`, false) || leasedProto("", false) {
		t.Error("a secret_type inside a value, or no internal data, made a lease")
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
