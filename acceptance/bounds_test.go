package acceptance

import (
	"strings"
	"testing"

	"github.com/docker/docker/client"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/testimage"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
)

// startWithProbe starts a dev Vault with this plugin at runtimes/ and the
// probe plugin registered in its catalog as secret/probe (runc).
func startWithProbe(t *testing.T, k vaulttest.Kind) (*client.Client, *vaulttest.Server) {
	t.Helper()
	docker := testimage.Docker(t)
	probeID := testimage.BuildProbe(t, docker)
	v := k.StartDev(t, "runtimes")
	v.MustRun(t, "write", "runtimes/catalog/container/secret-rt", "oci_runtime=runc")
	v.MustRun(t, "write", "runtimes/plugins/catalog/secret/probe", "oci_image="+testimage.ProbeName,
		"version="+testimage.ProbeVersion, "sha256="+probeID, "runtime=secret-rt")
	return docker, v
}

// A hosted plugin's answer over max_hosted_response_bytes is refused with a
// 502 naming the bound; answers under it pass; the plugin serves on.
func TestHostedAnswersAreBounded(t *testing.T) { vaulttest.EachServer(t, testHostedAnswersAreBounded) }

func testHostedAnswersAreBounded(t *testing.T, k vaulttest.Kind) {
	docker, v := startWithProbe(t, k)
	v.MustRun(t, "write", "runtimes/config", "max_hosted_response_bytes=2097152")
	v.MustRun(t, "write", "runtimes/hosted/p", "plugin=probe")
	v.MustRun(t, "write", "sys/plugins/reload/backend", "mounts=runtimes/")
	before := waitForState(t, v, "p", "running")

	var read readResult
	v.MustJSON(t, &read, "read", "runtimes/mounts/p/big", "size=1000000")
	if big, _ := read.Data["big"].(string); len(big) != 1000000 {
		t.Fatalf("an answer under the bound: %d bytes", len(big))
	}
	_, errOut, code := v.Run(t, "read", "runtimes/mounts/p/big", "size=3000000")
	if code != 2 || !strings.Contains(errOut, "Code: 502") || !strings.Contains(folded(errOut),
		"hosted mount p answered more than the bound on a hosted answer (max_hosted_response_bytes, at runtimes/config), and was refused before it was read") {
		t.Fatalf("an answer over the bound: exit %d\n%s", code, errOut)
	}
	v.MustJSON(t, &read, "read", "runtimes/mounts/p/open")
	after := waitForState(t, v, "p", "running")
	if read.Data["open"] != true || after.Data.Restarts != 0 || after.Data.ContainerID != before.Data.ContainerID {
		t.Fatalf("after the refused answer: %v, %+v", read.Data, after.Data)
	}
	v.MustRun(t, "delete", "runtimes/hosted/p")
	v.Stop(t)
	testimage.AssertNoContainersOf(t, docker, v.ClusterID)
}

// A plugin that panics on one path, or goes past its memory limit on one,
// fails only the requests to that path: each is answered 502 with the
// exit, not sent again, and the mount stays running and serves its other
// paths on a new container, however often that path is asked.
func TestPluginKilledByOneRequest(t *testing.T) {
	vaulttest.EachServer(t, testPluginKilledByOneRequest)
}

func testPluginKilledByOneRequest(t *testing.T, k vaulttest.Kind) {
	docker, v := startWithProbe(t, k)
	v.MustRun(t, "write", "runtimes/catalog/container/secret-rt", "oci_runtime=runc", "memory_bytes=67108864")
	v.MustRun(t, "write", "runtimes/hosted/p", "plugin=probe")
	v.MustRun(t, "write", "sys/plugins/reload/backend", "mounts=runtimes/")
	waitForState(t, v, "p", "running")

	var read readResult
	v.MustJSON(t, &read, "read", "runtimes/mounts/p/alloc", "mb=8")
	if read.Data["allocated_mb"] != float64(8) {
		t.Fatalf("an allocation under the limit: %v", read.Data)
	}
	for i := 0; i < 4; i++ { // more than the crash-loop rule's 3, each right after a start
		_, errOut, code := v.Run(t, "read", "runtimes/mounts/p/panic")
		if code != 2 || !strings.Contains(errOut, "Code: 502") || !strings.Contains(folded(errOut), "exited with code 2") ||
			!strings.Contains(folded(errOut), "probe: asked to panic") || !strings.Contains(folded(errOut), "this request is not sent again") {
			t.Fatalf("panic %d: exit %d\n%s", i, code, errOut)
		}
		v.MustJSON(t, &read, "read", "runtimes/mounts/p/open")
	}
	_, errOut, code := v.Run(t, "read", "runtimes/mounts/p/alloc", "mb=200")
	if code != 2 || !strings.Contains(errOut, "Code: 502") || !strings.Contains(folded(errOut), "exited with code 137") ||
		!strings.Contains(folded(errOut), "memory_bytes 67108864") || !strings.Contains(folded(errOut), "this request is not sent again") {
		t.Fatalf("an allocation past the limit: exit %d\n%s", code, errOut)
	}
	v.MustJSON(t, &read, "read", "runtimes/mounts/p/open")
	st := waitForState(t, v, "p", "running")
	if st.Data.Restarts != 5 || read.Data["open"] != true {
		t.Fatalf("after 4 panics and an OOM: %+v, %v", st.Data, read.Data)
	}
	v.MustRun(t, "delete", "runtimes/hosted/p")
	v.Stop(t)
	testimage.AssertNoContainersOf(t, docker, v.ClusterID)
}
