package acceptance

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/testimage"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
)

// The engine restarted while a hosted mount serves, on an engine of the
// test's own (stopping the machine's would fail the tests beside it):
//   - Docker: dockerd stops the container with itself. Requests meanwhile
//     get a 503 saying the engine does not answer; the mount is not
//     failed, however many requests came; the first request after dockerd
//     is back starts it, with its data intact.
//   - Podman: the container outlives the service (conmon holds it), so the
//     mount serves on while the service is down; killed meanwhile, it
//     cannot be restarted (503), and is once the service is back.
func TestEngineRestartedWhileMountsServe(t *testing.T) {
	vaulttest.EachServer(t, testEngineRestartedWhileMountsServe)
}

func testEngineRestartedWhileMountsServe(t *testing.T, k vaulttest.Kind) {
	docker := testimage.Docker(t)
	kvID := testimage.BuildKV(t, docker)
	for _, tc := range []struct {
		name  string
		start func(vaulttest.T) *testimage.PrivateEngine
	}{{"docker", testimage.PrivateDocker}, {"podman", testimage.PrivatePodman}} {
		t.Run(tc.name, func(t *testing.T) {
			e := tc.start(t)
			e.Load(t, docker, kvID)
			// A test that fails while its engine is down leaves a Podman
			// container running (conmon holds it): reaped once Vault is gone,
			// through the shared service, which answers when this one does not.
			var clusterID string
			reaper := e.Client
			if e.Podman {
				reaper = testimage.Podman(t, os.Getenv(testimage.EnvPodmanRunc))
			}
			testimage.ReapCluster(t, reaper, &clusterID)
			v := k.StartDev(t, "runtimes")
			clusterID = v.ClusterID
			hostKVOn(t, v, kvID, e.Engine, "kv")
			v.MustRun(t, "write", "runtimes/mounts/kv/app", "password=before")
			before := waitForState(t, v, "kv", "running")

			// Readers all along: none may see anything but 200 or 503,
			// except a read in flight when the engine stopped the
			// container: it may have reached the plugin, so it is not sent
			// again, and says so (one per reader at most).
			var stop atomic.Bool
			var wg sync.WaitGroup
			answers := newTally()
			for i := 0; i < 4; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for !stop.Load() {
						code, body := vaultHTTPBody(v, http.MethodGet, "runtimes/mounts/kv/app", nil)
						if (code == 502 || code == 503) && strings.Contains(body, "this request is not sent again") {
							answers.add("in flight at the stop", code, body)
						} else {
							answers.add("read", code, body)
						}
						time.Sleep(20 * time.Millisecond)
					}
				}()
			}
			defer func() { stop.Store(true); wg.Wait() }()

			e.Stop(t)
			if e.Podman {
				// The container lives on: the mount serves without its engine.
				if _, errOut, code := v.Run(t, "read", "runtimes/mounts/kv/app"); code != 0 {
					t.Fatalf("a read while the Podman service is down: exit %d\n%s", code, errOut)
				}
				if out, err := exec.Command("podman", "kill", before.Data.ContainerID).CombinedOutput(); err != nil {
					t.Fatalf("podman kill: %v: %s", err, out)
				}
			}
			eventually(t, "a 503 while the engine is down", func() error {
				code, body := httpDo(t, v, http.MethodGet, "runtimes/mounts/kv/app", "")
				if code != 503 || !strings.Contains(body, "hosted mount kv cannot start now: the engine does not answer") {
					return fmt.Errorf("%d %s", code, body)
				}
				return nil
			})
			time.Sleep(3 * time.Second) // requests keep coming against the down engine
			if st := waitForState(t, v, "kv", "stopped"); !strings.Contains(st.Data.Reason, "engine") {
				t.Fatalf("while the engine is down: %+v", st.Data)
			}

			e.Start(t)
			stop.Store(true)
			wg.Wait()
			// Requests ask the engine at most every 250 ms: the last ask
			// may have come just before it was back.
			time.Sleep(300 * time.Millisecond)
			var read readResult
			v.MustJSON(t, &read, "read", "runtimes/mounts/kv/app") // the first request after: served
			after := waitForState(t, v, "kv", "running")
			if read.Data["password"] != "before" || after.Data.ContainerID == before.Data.ContainerID {
				t.Fatalf("after the engine came back: %v, %+v", read.Data, after.Data)
			}
			codes := answers.byOp()["read"]
			for code, n := range codes {
				if code != 200 && code != 503 {
					t.Errorf("%d requests got %d during the restart (all: %v), one: %s", n, code, codes, answers.sample(code))
				}
			}
			inFlight := 0
			for _, n := range answers.byOp()["in flight at the stop"] {
				inFlight += n
			}
			if inFlight > 4 {
				t.Errorf("%d reads were in flight when the engine stopped the container, with 4 readers", inFlight)
			}
			t.Logf("requests during the restart, by status: %v; in flight at the stop, not sent again: %d", codes, inFlight)
			v.Stop(t)
			testimage.AssertNoContainersOf(t, e.Client, v.ClusterID)
		})
	}
}
