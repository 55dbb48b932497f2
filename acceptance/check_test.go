package acceptance

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/testimage"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
)

// A container plugin registered through the vault CLI really starts, under
// runc and runsc, and a broken runtime fails the check saying why.
func TestPluginCheckThroughTheCLI(t *testing.T) {
	vaulttest.EachServer(t, testPluginCheckThroughTheCLI)
}

func testPluginCheckThroughTheCLI(t *testing.T, k vaulttest.Kind) {
	docker := testimage.Docker(t)
	id := testimage.Build(t, docker)
	v := k.StartDev(t, "runtimes")

	v.MustRun(t, "write", "runtimes/catalog/container/gvisor", "memory_bytes=67108864")
	v.MustRun(t, "write", "runtimes/catalog/container/runc", "oci_runtime=runc", "cpu_nanos=500000000")
	v.MustRun(t, "write", "runtimes/catalog/container/broken", "oci_runtime=nope")
	for _, rt := range []string{"gvisor", "runc", "broken"} {
		v.MustRun(t, "write", "runtimes/plugins/catalog/secret/"+rt, "oci_image="+testimage.Name,
			"version="+testimage.Version, "sha256="+id, "runtime="+rt)
	}

	for _, rt := range []string{"gvisor", "runc"} {
		var res readResult
		v.MustJSON(t, &res, "write", "-f", "runtimes/plugins/catalog/secret/"+rt+"/check")
		if res.Data["plugin_version"] != testimage.Version || res.Data["total_ms"].(float64) <= 0 || len(res.Warnings) != 0 {
			t.Fatalf("check with %s: %#v %v", rt, res.Data, res.Warnings)
		}
		for _, k := range []string{"create_ms", "start_ms", "handshake_ms", "total_ms"} {
			if v := res.Data[k].(float64); v != math.Trunc(v) {
				t.Errorf("%s = %v: not whole milliseconds", k, v)
			}
		}
		t.Logf("check with runtime %s: %v", rt, res.Data)
	}

	// HashiCorp's kv reports no version of its own: the check says so,
	// rather than the CLI's bare n/a.
	kvID := testimage.BuildKV(t, docker)
	v.MustRun(t, "write", "runtimes/plugins/catalog/secret/kv", "oci_image="+testimage.KVName,
		"version="+testimage.KVVersion, "sha256="+kvID, "runtime=runc")
	var kv readResult
	v.MustJSON(t, &kv, "write", "-f", "runtimes/plugins/catalog/secret/kv/check")
	if kv.Data["plugin_version"] != "" || kv.Data["registered_version"] != testimage.KVVersion ||
		fmt.Sprint(kv.Warnings) != "[the plugin reports no version of its own (it does not implement the SDK's PluginVersion); it is registered as "+testimage.KVVersion+"]" {
		t.Fatalf("check of kv: %#v %v", kv.Data, kv.Warnings)
	}

	_, errOut, code := v.Run(t, "write", "-f", "runtimes/plugins/catalog/secret/broken/check")
	folded := strings.Join(strings.Fields(errOut), " ")
	if code != 2 || !strings.Contains(errOut, "Code: 400") || !strings.Contains(folded, `the Docker Engine has no OCI runtime "nope"`) {
		t.Fatalf("check with a broken runtime: exit %d\n%s", code, errOut)
	}

	var rc readResult
	v.MustJSON(t, &rc, "read", "runtimes/plugins/catalog/secret/runc/run-config")
	host := rc.Data["host_config"].(map[string]interface{})
	if host["Runtime"] != "runc" || host["NanoCpus"] != float64(500000000) {
		t.Fatalf("run-config host_config: %#v", host)
	}
	testimage.AssertNoContainersOf(t, docker, v.ClusterID)
}
