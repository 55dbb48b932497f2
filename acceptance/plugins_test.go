package acceptance

import (
	"reflect"
	"strings"
	"testing"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
)

func TestPluginsThroughTheCLI(t *testing.T) { vaulttest.EachServer(t, testPluginsThroughTheCLI) }

func testPluginsThroughTheCLI(t *testing.T, k vaulttest.Kind) {
	v := k.StartDev(t, "runtimes")
	v.MustRun(t, "write", "runtimes/catalog/container/shared", "oci_runtime=runc")

	v.MustRun(t, "write", "runtimes/plugins/catalog/secret/a", "oci_image=example/kv", "version=v1.0.0",
		"runtime=shared", "env=TOKEN=hunter2", "env=MODE=fast", "args=-debug")
	v.MustRun(t, "write", "runtimes/plugins/catalog/auth/b", "oci_image=example/auth", "version=2.1.0", "runtime=shared")

	var read readResult
	v.MustJSON(t, &read, "read", "runtimes/plugins/catalog/secret/a")
	assertSubset(t, read.Data, map[string]interface{}{
		"oci_image": "example/kv", "version": "v1.0.0", "runtime": "shared",
		"env": []interface{}{"TOKEN", "MODE"}, "args": []interface{}{"-debug"},
	})
	if out := v.MustRun(t, "read", "-format=json", "runtimes/plugins/catalog/secret/a"); strings.Contains(out, "hunter2") {
		t.Fatalf("a read returned an env value:\n%s", out)
	}

	v.MustJSON(t, &read, "read", "runtimes/catalog/container/shared")
	if !reflect.DeepEqual(read.Data["plugins"], []interface{}{"secret/a", "auth/b"}) {
		t.Fatalf("runtime plugins = %#v", read.Data["plugins"])
	}

	var keys []string
	v.MustJSON(t, &keys, "list", "runtimes/plugins/catalog")
	if !reflect.DeepEqual(keys, []string{"auth/b", "secret/a"}) {
		t.Fatalf("list plugins = %v", keys)
	}
	v.MustJSON(t, &keys, "list", "runtimes/plugins/catalog/secret")
	if !reflect.DeepEqual(keys, []string{"a"}) {
		t.Fatalf("list secret plugins = %v", keys)
	}

	_, errOut, code := v.Run(t, "delete", "runtimes/catalog/container/shared")
	want := `unable to delete "shared" runtime. Registered plugins=[secret/a auth/b] are referencing it.`
	if code != 2 || !strings.Contains(errOut, "Code: 400") || !strings.Contains(strings.Join(strings.Fields(errOut), " "), want) {
		t.Fatalf("deleting a runtime in use: exit %d\n%s", code, errOut)
	}

	_, errOut, code = v.Run(t, "write", "runtimes/plugins/catalog/secret/c", "oci_image=example/kv", "version=1.0.0", "runtime=missing")
	if code != 2 || !strings.Contains(errOut, `plugin runtime "missing" does not exist`) || strings.Contains(errOut, "%!") {
		t.Fatalf("missing runtime: exit %d\n%s", code, errOut)
	}

	v.MustRun(t, "patch", "runtimes/plugins/catalog/secret/a", "runtime=")
	v.MustRun(t, "delete", "runtimes/plugins/catalog/auth/b")
	v.MustRun(t, "delete", "runtimes/catalog/container/shared")
}
