package acceptance

import (
	"strings"
	"testing"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/testimage"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
)

// Writing a runtime asks its real engine: what it lacks, or its silence, is
// a warning the vault CLI prints, and the runtime is stored; a read with
// check_engine says what the engine runs.
func TestRuntimesCheckedAgainstTheirEngine(t *testing.T) {
	vaulttest.EachServer(t, testRuntimesCheckedAgainstTheirEngine)
}

func testRuntimesCheckedAgainstTheirEngine(t *testing.T, k vaulttest.Kind) {
	engines := testimage.Engines(t)
	v := k.StartDev(t, "runtimes")

	_, errOut, code := v.Run(t, "write", "runtimes/catalog/container/typo", "oci_runtime=runcc")
	if code != 0 || !strings.Contains(folded(errOut), "has no OCI runtime runcc; it has ") || !strings.Contains(errOut, "runsc") {
		t.Fatalf("a runtime the Docker Engine lacks: exit %d\n%s", code, errOut)
	}
	_, errOut, code = v.Run(t, "write", "runtimes/catalog/container/nowhere", "oci_runtime=runc", "engine=unix:///run/rc-no-such-engine.sock")
	if code != 0 || !strings.Contains(folded(errOut), "the engine at unix:///run/rc-no-such-engine.sock could not be reached") {
		t.Fatalf("an engine that does not answer: exit %d\n%s", code, errOut)
	}
	var read readResult
	v.MustJSON(t, &read, "read", "runtimes/catalog/container/typo", "check_engine=true")
	if read.Data["engine_runs_oci_runtime"] != false || read.Data["oci_runtime"] != "runcc" {
		t.Fatalf("read with check_engine: %v", read.Data)
	}

	for _, e := range engines {
		if !e.Podman {
			continue
		}
		other := map[string]string{"runc": "runsc", "runsc": "runc"}[e.OCIRuntime]
		_, errOut, code := v.Run(t, "write", "runtimes/catalog/container/"+other+"-on-"+e.OCIRuntime, "oci_runtime="+other, "engine="+e.Address)
		if code != 0 || !strings.Contains(folded(errOut), "the Podman service at "+e.Address+" runs every container under its default OCI runtime "+e.OCIRuntime) {
			t.Fatalf("%s asked of %s: exit %d\n%s", other, e.Name, code, errOut)
		}
		if _, errOut, _ := v.Run(t, "write", "runtimes/catalog/container/"+e.OCIRuntime+"-on-"+e.OCIRuntime, "oci_runtime="+e.OCIRuntime, "engine="+e.Address); errOut != "" {
			t.Fatalf("%s asked of %s warned: %s", e.OCIRuntime, e.Name, errOut)
		}
		v.MustJSON(t, &read, "read", "runtimes/catalog/container/"+e.OCIRuntime+"-on-"+e.OCIRuntime, "check_engine=true")
		if read.Data["engine_runs_oci_runtime"] != true || read.Data["engine"] != e.Address {
			t.Fatalf("read with check_engine on %s: %v", e.Name, read.Data)
		}
	}
}
