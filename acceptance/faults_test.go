package acceptance

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
)

// When this plugin's process dies, Vault starts a new one at the next
// request without reading the special paths again: a hosted mount whose
// plugin declares some (the probe's root path admin) serves at once, never
// pending_reload, and its paths are still enforced (no sudo, no admin).
func TestAProcessCrashCostsNoRequestOfAMountWithSpecialPaths(t *testing.T) {
	vaulttest.EachServer(t, testAProcessCrashCostsNoRequestOfAMountWithSpecialPaths)
}

func testAProcessCrashCostsNoRequestOfAMountWithSpecialPaths(t *testing.T, k vaulttest.Kind) {
	docker, v := startWithProbe(t, k)
	hostProbe(t, v)
	v.MustRun(t, "read", "runtimes/mounts/p/admin")
	noSudo := tokenWithPolicy(t, v, "no-sudo", `path "runtimes/mounts/*" { capabilities = ["read"] }`)

	pids := v.PluginProcesses()
	if len(pids) == 0 {
		t.Fatal("no plugin process to kill")
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	answered := 0
	eventually(t, "the admin path after the process died", func() error {
		_, errOut, code := v.Run(t, "read", "runtimes/mounts/p/admin")
		if strings.Contains(errOut, "differ from those Vault enforces") {
			t.Fatalf("after a crash of the process, a mount with special paths is pending a reload:\n%s", errOut)
		}
		if code != 0 {
			t.Logf("a read after the process died: exit %d: %s", code, folded(errOut))
			return fmt.Errorf("exit %d: %s", code, errOut)
		}
		answered++
		return nil
	})
	assertAccess(t, v, noSudo, []access{
		{[]string{"read", "runtimes/mounts/p/open"}, true},
		{[]string{"read", "runtimes/mounts/p/admin"}, false}, // still the plugin's root path
	})
	unhostProbe(t, docker, v)
}

// A write during which the hosted plugin exits (it applied the write, then
// died before answering) is not sent again: the client gets a 502 saying
// so, the write was applied once, one exit is listed, and the next request
// is served by a new container.
func TestAWriteThatReachedThePluginIsNeverSentAgain(t *testing.T) {
	vaulttest.EachServer(t, testAWriteThatReachedThePluginIsNeverSentAgain)
}

func testAWriteThatReachedThePluginIsNeverSentAgain(t *testing.T, k vaulttest.Kind) {
	docker, v := startWithProbe(t, k)
	before := hostProbe(t, v)

	_, errOut, code := v.Run(t, "write", "runtimes/mounts/p/count", "exit=true")
	if code != 2 || !strings.Contains(errOut, "Code: 502") || !strings.Contains(folded(errOut), "this request is not sent again, as it may have reached the plugin and been applied") {
		t.Fatalf("a write during which the plugin exited: exit %d\n%s", code, errOut)
	}
	var read readResult
	v.MustJSON(t, &read, "read", "runtimes/mounts/p/count")
	if read.Data["count"] != float64(1) {
		t.Fatalf("the write was applied %v times", read.Data["count"])
	}
	var st mountState
	v.MustJSON(t, &st, "read", "runtimes/hosted/p")
	if st.Data.ContainerID == before.Data.ContainerID || st.Data.Restarts != 1 || len(st.Data.Health.Exits) != 1 || st.Data.Health.Exits[0].ExitCode != 3 {
		t.Fatalf("after one death: %+v", st.Data)
	}
	for _, line := range st.Data.Health.Exits[0].Output {
		if strings.Contains(line, "|grpc|") {
			t.Errorf("the exit's output quotes go-plugin's handshake line: %q", line)
		}
	}
	unhostProbe(t, docker, v)
}

// A plugin that does not answer within the request limit (60 s) gets every
// request a 504 naming the mount, however many are in flight and however
// gRPC ends each call; the metrics count them failed, not canceled, as no
// client left. Nothing restarts: a slow plugin is not a dead one.
func TestEveryRequestPastTheLimitIsA504(t *testing.T) {
	vaulttest.EachServer(t, testEveryRequestPastTheLimitIsA504)
}

func testEveryRequestPastTheLimitIsA504(t *testing.T, k vaulttest.Kind) {
	docker, v := startWithProbe(t, k)
	before := hostProbe(t, v)
	const n = 16
	answers := newTally()
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body := vaultHTTPBody(v, http.MethodGet, "runtimes/mounts/p/sleep?seconds=70", nil)
			if code == 504 && strings.Contains(body, "hosted mount p is not answering: its plugin did not answer within 1m0s") {
				code = -504 // the 504 this plugin gives, not one of Vault's
			}
			answers.add("read", code, body)
		}()
	}
	wg.Wait()
	if got := answers.byOp()["read"]; got[-504] != n {
		t.Fatalf("%d slow requests answered %v; one: %s", n, got, answers.sample(firstCode(got, -504)))
	}
	_, metrics := vaultHTTPBody(v, http.MethodGet, "runtimes/metrics", nil)
	if want := `runtime_catalog_hosted_requests_total{mount="p",operation="read",outcome="failed"} 16`; !strings.Contains(metrics, want) {
		t.Errorf("the metrics do not count them failed (%s):\n%s", want, metrics)
	}
	if after := waitForState(t, v, "p", "running"); after.Data.ContainerID != before.Data.ContainerID || after.Data.Restarts != 0 {
		t.Fatalf("a slow plugin was restarted: %+v", after.Data)
	}
	unhostProbe(t, docker, v)
}

// firstCode is a code of counts other than want, to show a sample of.
func firstCode(counts map[int]int, want int) int {
	for code := range counts {
		if code != want {
			return code
		}
	}
	return want
}
