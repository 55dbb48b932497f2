package runtimecatalog

import (
	"context"
	"reflect"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestRegistryCredentialsAreNeverReturned(t *testing.T) {
	b, s := newTestBackend(t)
	mustDo(t, b, s, logical.UpdateOperation, "registries/127.0.0.1:5000", map[string]interface{}{"username": "ci", "password": "hunter2"})
	read := mustDo(t, b, s, logical.ReadOperation, "registries/127.0.0.1:5000", nil)
	if !reflect.DeepEqual(read.Data, map[string]interface{}{"registry": "127.0.0.1:5000", "username": "ci", "password_set": true}) {
		t.Fatalf("read = %v", read.Data)
	}
	list := mustDo(t, b, s, logical.ListOperation, "registries/", nil)
	if !reflect.DeepEqual(list.Data["keys"], []string{"127.0.0.1:5000"}) {
		t.Fatalf("list = %v", list.Data)
	}
	// What a start is given to pull with.
	auth := b.runOptions(context.Background(), "test").Auth("127.0.0.1:5000")
	if auth == nil || auth.Username != "ci" || auth.Password != "hunter2" {
		t.Fatalf("auth = %+v", auth)
	}
	if b.runOptions(context.Background(), "test").Auth("registry.example.com") != nil {
		t.Fatal("credentials for a registry that has none")
	}
	mustDo(t, b, s, logical.DeleteOperation, "registries/127.0.0.1:5000", nil)
	if resp, err := do(t, b, s, logical.ReadOperation, "registries/127.0.0.1:5000", nil); err != nil || resp != nil {
		t.Fatalf("read after delete: %v %v", resp, err)
	}
}

func TestRegistryCredentialErrors(t *testing.T) {
	b, s := newTestBackend(t)
	for path, tc := range map[string]struct {
		data map[string]interface{}
		want string
	}{
		"registries/127.0.0.1:5000": {map[string]interface{}{"password": "p"}, "username is required: the registry's user"},
		"registries/registry.local": {map[string]interface{}{"username": "u"}, "password is required: the registry user's password or token"},
		"registries/-bad:port":      {map[string]interface{}{"username": "u", "password": "p"}, `registry "-bad:port" is not a registry address: a host name or IP address and an optional port, as an image names it (127.0.0.1:5000 in 127.0.0.1:5000/kv-plugin)`},
	} {
		if got := errorOf(t, b, s, logical.UpdateOperation, path, tc.data); got != tc.want {
			t.Errorf("%s: %q\nwant %q", path, got, tc.want)
		}
	}
	if keys, _ := s.List(context.Background(), registryPrefix); len(keys) != 0 {
		t.Fatalf("refused writes stored %v", keys)
	}
}
