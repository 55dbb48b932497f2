package acceptance

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/testimage"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
)

// A list is returned raw for speed, and a wrapped list wraps the same data:
// unwrapping gives the runtimes, as from Vault's own catalog, their names in
// keys and key_info. (Vault itself cannot wrap an external plugin's "keys".)
func TestWrappedListUnwrapsToTheRuntimes(t *testing.T) {
	vaulttest.EachServer(t, testWrappedListUnwrapsToTheRuntimes)
}

func testWrappedListUnwrapsToTheRuntimes(t *testing.T, k vaulttest.Kind) {
	v := k.StartDev(t, "runtimes")
	v.MustRun(t, "write", "runtimes/catalog/container/a", "oci_runtime=runc")
	v.MustRun(t, "write", "runtimes/catalog/container/b", "cpu_nanos=50000000")

	var wrapped struct {
		WrapInfo struct {
			Token string `json:"token"`
		} `json:"wrap_info"`
	}
	// The CLI's list command shows only keys, so the wrap_info is asked
	// for through read with list=true, as the CLI itself sends a list.
	v.MustJSON(t, &wrapped, "read", "-wrap-ttl=60", "runtimes/catalog", "list=true")
	token := wrapped.WrapInfo.Token
	if token == "" {
		t.Fatal("no wrapping token")
	}
	unwrapped := unwrap(t, v, token)
	if info := unwrapped.Data["key_info"]; !reflect.DeepEqual(info, map[string]interface{}{
		"a": map[string]interface{}{"oci_runtime": "runc"}, "b": map[string]interface{}{"oci_runtime": "runsc"},
	}) {
		t.Fatalf("unwrapped key_info = %#v (all: %#v)", info, unwrapped.Data)
	}
	if keys := unwrapped.Data["keys"]; !reflect.DeepEqual(keys, []interface{}{"a", "b"}) {
		t.Fatalf("unwrapped keys = %#v", keys)
	}
	runtimes, _ := unwrapped.Data["runtimes"].([]interface{})
	if len(runtimes) != 2 || runtimes[1].(map[string]interface{})["cpu_nanos"] != float64(50000000) {
		t.Fatalf("unwrapped runtimes = %#v", unwrapped.Data["runtimes"])
	}
}

// wrappedList wraps a list as the CLI sends one (read with list=true, which
// shows the wrap_info) and unwraps it.
func wrappedList(t *testing.T, v *vaulttest.Server, path string) readResult {
	t.Helper()
	var wrapped struct {
		WrapInfo struct {
			Token string `json:"token"`
		} `json:"wrap_info"`
	}
	v.MustJSON(t, &wrapped, "read", "-wrap-ttl=60", path, "list=true")
	if wrapped.WrapInfo.Token == "" {
		t.Fatalf("%s: no wrapping token", path)
	}
	return unwrap(t, v, wrapped.WrapInfo.Token)
}

// unwrap unwraps through the HTTP API: the CLI's unwrap prints only the
// keys of a list.
func unwrap(t *testing.T, v *vaulttest.Server, token string) readResult {
	t.Helper()
	code, body := httpDo(t, v, "POST", "sys/wrapping/unwrap", `{"token":"`+token+`"}`)
	var unwrapped readResult
	if err := json.Unmarshal([]byte(body), &unwrapped); code != 200 || err != nil {
		t.Fatalf("unwrap: %d %v\n%s", code, err, body)
	}
	return unwrapped
}

// A hosted plugin's lists wrap too, and unwrap to what the unwrapped list
// answers: kv v1's keys and kv v2's metadata. Under Vault's own
// containerized kv both are 404 "unsupported path".
func TestWrappedHostedLists(t *testing.T) { vaulttest.EachServer(t, testWrappedHostedLists) }

func testWrappedHostedLists(t *testing.T, k vaulttest.Kind) {
	docker := testimage.Docker(t)
	kvID := testimage.BuildKV(t, docker)
	v := k.StartDev(t, "runtimes")
	hostKV(t, v, kvID, "runc", "a", "kv2")
	v.MustRun(t, "write", "runtimes/mounts/a/x", "v=1")
	v.MustRun(t, "write", "runtimes/mounts/a/y/z", "v=2")
	eventually(t, "writing to kv v2", func() error {
		return writeJSON(t, v, "write", "runtimes/mounts/kv2/data/app", `{"data":{"v":"1"}}`)
	})
	for _, path := range []string{"runtimes/mounts/a/", "runtimes/mounts/kv2/metadata/"} {
		var plain readResult
		v.MustJSON(t, &plain, "read", path, "list=true")
		if len(plain.Data["keys"].([]interface{})) == 0 {
			t.Fatalf("%s: no keys: %#v", path, plain.Data)
		}
		if got := wrappedList(t, v, path); !reflect.DeepEqual(got.Data, plain.Data) {
			t.Errorf("%s unwrapped: %#v, unwrapped list: %#v", path, got.Data, plain.Data)
		}
	}
	// A wrapped list of nothing is a 404, as Vault answers for its own.
	if _, errOut, code := v.Run(t, "read", "-wrap-ttl=60", "runtimes/mounts/a/none/", "list=true"); code != 2 || !strings.Contains(errOut, "No value found") { // the CLI's 404
		t.Errorf("an empty wrapped list: exit %d\n%q", code, errOut)
	}
	v.Stop(t)
	testimage.AssertNoContainersOf(t, docker, v.ClusterID)
}
