package runtimecatalog

import (
	"errors"
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
