package runtimecatalog

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestMountWriteErrors(t *testing.T) {
	b, s := newTestBackend(t)
	for _, tc := range []struct {
		path string
		data map[string]interface{}
		want string
	}{
		{"hosted/-x", map[string]interface{}{"plugin": "kv"}, `invalid mount name "-x": a name has at most 128 characters, letters, digits and '_', with '-' and '.' allowed only inside it, and no '..'`},
		{"hosted/m", nil, "plugin is required: the name of a registered secret plugin to host"},
		{"hosted/m", map[string]interface{}{"plugin": "a/b"}, `invalid plugin name "a/b": a name has at most 128 characters, letters, digits and '_', with '-' and '.' allowed only inside it, and no '..'`},
		{"hosted/m", map[string]interface{}{"plugin": "kv"}, `no secret plugin "kv" is registered: register it at plugins/catalog/secret/kv`},
	} {
		if got := errorOf(t, b, s, logical.UpdateOperation, tc.path, tc.data); got != tc.want {
			t.Errorf("%s %v:\n got %s\nwant %s", tc.path, tc.data, got, tc.want)
		}
	}
	if got := errorOf(t, b, s, logical.UpdateOperation, "plugins/reload", nil); got != "give either plugin (reload every mount of it) or mounts (a list of hosted mounts), not both" {
		t.Errorf("reload: %s", got)
	}
	for _, path := range []string{"mounts/nope/x", "mounts/nope"} { // with and without the slash, the plugin's root
		resp, err := do(t, b, s, logical.ReadOperation, path, nil)
		var coded logical.HTTPCodedError
		if !errors.As(err, &coded) || coded.Code() != 404 || resp != nil {
			t.Errorf("%s, a request to a missing hosted mount: %v %v", path, resp, err)
		}
	}
	// The settings need sudo; the data only what the ACL grants.
	for _, root := range b.SpecialPaths().Root {
		if strings.HasPrefix(root, "mounts") {
			t.Errorf("root path %q: a hosted mount's data needs sudo", root)
		}
	}
	if !slices.Contains(b.SpecialPaths().Root, "hosted/*") {
		t.Errorf("root paths %v: the hosted mounts' settings need no sudo", b.SpecialPaths().Root)
	}
	if keys := listKeys(t, mustDo(t, b, s, logical.ListOperation, "hosted/", nil).Data); len(keys) != 0 {
		t.Errorf("mounts = %v", keys)
	}
}
