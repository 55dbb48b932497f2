package acceptance

import (
	"reflect"
	"testing"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
)

// A list is returned raw for speed, but a wrapped list must still wrap the
// data: unwrapping gives the runtimes, as from Vault's own catalog, and their
// names in key_info (Vault cannot wrap an external plugin's "keys").
func TestWrappedListUnwrapsToTheRuntimes(t *testing.T) {
	v := vaulttest.StartDev(t, "runtimes")
	v.MustRun(t, "write", "runtimes/catalog/container/a", "oci_runtime=runc")
	v.MustRun(t, "write", "runtimes/catalog/container/b", "cpu_nanos=50000000")

	var wrapped struct {
		WrapInfo struct {
			Token string `json:"token"`
		} `json:"wrap_info"`
	}
	// The CLI's list command reads only keys, so the wrap_info is asked for
	// through read with list=true, as the CLI itself sends a list.
	v.MustJSON(t, &wrapped, "read", "-wrap-ttl=60", "runtimes/catalog", "list=true")
	token := wrapped.WrapInfo.Token
	if token == "" {
		t.Fatal("no wrapping token")
	}
	var unwrapped readResult
	v.MustJSON(t, &unwrapped, "unwrap", token)
	if info := unwrapped.Data["key_info"]; !reflect.DeepEqual(info, map[string]interface{}{
		"a": map[string]interface{}{"oci_runtime": "runc"}, "b": map[string]interface{}{"oci_runtime": "runsc"},
	}) {
		t.Fatalf("unwrapped key_info = %#v (all: %#v)", info, unwrapped.Data)
	}
	runtimes, _ := unwrapped.Data["runtimes"].([]interface{})
	if len(runtimes) != 2 || runtimes[1].(map[string]interface{})["cpu_nanos"] != float64(50000000) {
		t.Fatalf("unwrapped runtimes = %#v", unwrapped.Data["runtimes"])
	}
}
