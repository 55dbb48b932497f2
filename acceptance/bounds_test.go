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
func startWithProbe(t *testing.T) (*client.Client, *vaulttest.Server) {
	t.Helper()
	docker := testimage.Docker(t)
	probeID := testimage.BuildProbe(t, docker)
	v := vaulttest.StartDev(t, "runtimes")
	v.MustRun(t, "write", "runtimes/catalog/container/secret-rt", "oci_runtime=runc")
	v.MustRun(t, "write", "runtimes/plugins/catalog/secret/probe", "oci_image="+testimage.ProbeName,
		"version="+testimage.ProbeVersion, "sha256="+probeID, "runtime=secret-rt")
	return docker, v
}

// A hosted plugin's answer over max_hosted_response_bytes is refused with a
// 502 naming the bound; answers under it pass; the plugin serves on.
func TestHostedAnswersAreBounded(t *testing.T) {
	docker, v := startWithProbe(t)
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
