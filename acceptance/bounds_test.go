package acceptance

import (
	"fmt"
	"regexp"
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

// hostProbe hosts the probe plugin at mounts/p, has Vault read its special
// paths (its root path admin), and waits until it runs.
func hostProbe(t *testing.T, v *vaulttest.Server) mountState {
	t.Helper()
	v.MustRun(t, "write", "runtimes/hosted/p", "plugin=probe")
	v.MustRun(t, "write", "sys/plugins/reload/backend", "mounts=runtimes/")
	return waitForState(t, v, "p", "running")
}

// unhostProbe deletes the probe's mount, stops the server, and checks that
// no container of it is left.
func unhostProbe(t *testing.T, docker *client.Client, v *vaulttest.Server) {
	t.Helper()
	v.MustRun(t, "delete", "runtimes/hosted/p")
	v.Stop(t)
	testimage.AssertNoContainersOf(t, docker, v.ClusterID)
}

// A hosted plugin's answer over max_hosted_response_bytes is refused with a
// 502 naming the bound; answers under it pass; the plugin serves on.
func TestHostedAnswersAreBounded(t *testing.T) { vaulttest.EachServer(t, testHostedAnswersAreBounded) }

func testHostedAnswersAreBounded(t *testing.T, k vaulttest.Kind) {
	docker, v := startWithProbe(t, k)
	v.MustRun(t, "write", "runtimes/config", "max_hosted_response_bytes=2097152")
	before := hostProbe(t, v)

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
	unhostProbe(t, docker, v)
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
	hostProbe(t, v)

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
	// The OOM kill, in the mount's read, its metrics and the server's log.
	h := st.Data.Health
	if len(h.Exits) != 5 || h.Exits[0].Reason != "memory_limit" || h.Exits[0].ExitCode != 137 || h.Exits[1].Reason != "panicked" ||
		h.OOMKills == nil || *h.OOMKills != 1 || h.RestartCauses["memory_limit"] != 1 || h.RestartCauses["panicked"] != 4 {
		t.Fatalf("the mount's health after 4 panics and an OOM: %+v", h)
	}
	if !strings.Contains(strings.Join(h.Exits[1].Output, "\n"), "probe: asked to panic") {
		t.Errorf("a panic's exit without its output: %q", h.Exits[1].Output)
	}
	metrics := v.MustRun(t, "read", "-format=raw", "runtimes/metrics")
	for _, want := range []string{`runtime_catalog_hosted_oom_kills_total{mount="p"} 1`, `runtime_catalog_hosted_restarts_total{cause="memory_limit",mount="p"} 1`,
		`runtime_catalog_hosted_restarts_total{cause="panicked",mount="p"} 4`} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("no %s in the metrics:\n%s", want, metrics)
		}
	}
	eventually(t, "the OOM kill and the probe's own line in the server's log", func() error {
		// once, at error level, with the mount, the code and the reason;
		// and the plugin's own line at its level, under the mount's name
		for _, want := range [][]string{
			{"[ERROR]", "hosted plugin exited:", "mount=p", "exit_code=137", "reason=memory_limit"},
			{"[INFO]", "probe: allocating:", "@module=hosted.p.", "mb=200"},
		} {
			if n := logEntries(v.Log(), want...); n != 1 {
				return fmt.Errorf("%d log entries with all of %q", n, want)
			}
		}
		return nil
	})
	unhostProbe(t, docker, v)
}

var logEntryStart = regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\dT`)

// logEntries counts the server log's entries (one may span lines: a
// plugin's output) that hold every one of parts; the fields of an entry
// come in no fixed order.
func logEntries(log string, parts ...string) int {
	starts := logEntryStart.FindAllStringIndex(log, -1)
	n := 0
	for i, start := range starts {
		end := len(log)
		if i+1 < len(starts) {
			end = starts[i+1][0]
		}
		entry, all := log[start[0]:end], true
		for _, p := range parts {
			all = all && strings.Contains(entry, p)
		}
		if all {
			n++
		}
	}
	return n
}
