package runtimecatalog

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

func TestPluginRunConfig(t *testing.T) {
	b, s := newTestBackend(t)
	mustDo(t, b, s, logical.UpdateOperation, "catalog/container/limited", map[string]interface{}{
		"oci_runtime": "runc", "cgroup_parent": "/vault/", "cpu_nanos": 500000000, "memory_bytes": 67108864,
	})
	mustDo(t, b, s, logical.UpdateOperation, "plugins/catalog/secret/kv", pluginData(map[string]interface{}{
		"sha256": testSHA, "command": "/kv", "args": []string{"-x"}, "env": []string{"TOKEN=s3cret", "VAULT_VERSION=mine"}, "runtime": "limited",
	}))

	data := mustDo(t, b, s, logical.ReadOperation, "plugins/catalog/secret/kv/run-config", nil).Data
	config := data["config"].(map[string]interface{})
	host := data["host_config"].(map[string]interface{})
	for field, want := range map[string]interface{}{
		"Image": "sha256:" + testSHA, "Entrypoint": []interface{}{"/kv"}, "Cmd": []interface{}{"-x"},
	} {
		if !reflect.DeepEqual(config[field], want) {
			t.Errorf("config.%s = %#v, want %#v", field, config[field], want)
		}
	}
	for field, want := range map[string]interface{}{
		"Runtime": "runc", "CgroupParent": "/vault/", "NanoCpus": float64(500000000), "Memory": float64(67108864),
		"AutoRemove": true, "ReadonlyRootfs": true, "CapDrop": []interface{}{"ALL"},
	} {
		if !reflect.DeepEqual(host[field], want) {
			t.Errorf("host_config.%s = %#v, want %#v", field, host[field], want)
		}
	}
	// The run config shows what the container gets, but never the value of
	// a registered env variable: reads do not show them either.
	env := config["Env"].([]interface{})
	if env[0] != "TOKEN="+runtime.RedactedValue || env[len(env)-1] != "PLUGIN_UNIX_SOCKET_DIR=/tmp/go-plugin-container" {
		t.Errorf("Env = %v", env)
	}
	// A registered variable the host sets after it is still not shown.
	if !slices.Contains(env, interface{}("VAULT_VERSION="+runtime.RedactedValue)) {
		t.Errorf("Env = %v: VAULT_VERSION's value shown", env)
	}
	if encoded, _ := json.Marshal(data); strings.Contains(string(encoded), "s3cret") {
		t.Errorf("run-config shows an env value: %s", encoded)
	}

	// A runtime edited since registration applies to the next start.
	mustDo(t, b, s, logical.PatchOperation, "catalog/container/limited", map[string]interface{}{"oci_runtime": nil})
	host = mustDo(t, b, s, logical.ReadOperation, "plugins/catalog/secret/kv/run-config", nil).Data["host_config"].(map[string]interface{})
	if host["Runtime"] != "runsc" {
		t.Errorf("after the runtime's edit, Runtime = %v, want runsc", host["Runtime"])
	}
}

func TestPluginRunPathsForMissingPlugin(t *testing.T) {
	b, s := newTestBackend(t)
	for _, tc := range []struct {
		op   logical.Operation
		path string
	}{
		{logical.ReadOperation, "plugins/catalog/secret/nope/run-config"},
		{logical.UpdateOperation, "plugins/catalog/secret/nope/check"},
	} {
		_, err := do(t, b, s, tc.op, tc.path, nil)
		var coded logical.HTTPCodedError
		if !errors.As(err, &coded) || coded.Code() != http.StatusNotFound || err.Error() != "no plugin secret/nope" {
			t.Errorf("%s %s: %v, want a 404 'no plugin secret/nope'", tc.op, tc.path, err)
		}
	}
	if msg := errorOf(t, b, s, logical.ReadOperation, "plugins/catalog/bogus/x/run-config", nil); msg != `"bogus" is not a supported plugin type: use one of auth, database, secret` {
		t.Errorf("bad type: %s", msg)
	}
}
