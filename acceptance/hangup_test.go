package acceptance

import (
	"context"
	"math/rand"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/testimage"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
)

// hangUp sends n reads of path from clients that hang up after a moment,
// most of them while the request is on its way through the hosted plugin.
func hangUp(t *testing.T, v *vaulttest.Server, path string, clients, rounds int) {
	t.Helper()
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			r := rand.New(rand.NewSource(seed))
			for i := 0; i < rounds; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(200+r.Intn(3000))*time.Microsecond)
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, v.Addr+"/v1/"+path, nil)
				req.Header.Set("X-Vault-Token", v.Token)
				if resp, err := http.DefaultClient.Do(req); err == nil {
					resp.Body.Close()
				}
				cancel()
			}
		}(int64(c))
	}
	wg.Wait()
}

// Clients that hang up mid-request leave a healthy mount running, with no
// restart: their cancelled requests are theirs, not the plugin's. The same
// after a pause of its container (a hung plugin), whose requests time out
// while its settings still answer.
func TestClientsHangingUpLeaveTheMountRunning(t *testing.T) {
	vaulttest.EachServer(t, testClientsHangingUpLeaveTheMountRunning)
}

func testClientsHangingUpLeaveTheMountRunning(t *testing.T, k vaulttest.Kind) {
	docker := testimage.Docker(t)
	kvID := testimage.BuildKV(t, docker)
	for _, oci := range []string{"runc", "runsc"} {
		t.Run(oci, func(t *testing.T) {
			v := k.StartDev(t, "runtimes")
			hostKV(t, v, kvID, oci, "kv")
			v.MustRun(t, "write", "runtimes/mounts/kv/a", "v=1")
			var before mountState
			v.MustJSON(t, &before, "read", "runtimes/hosted/kv")

			hangUp(t, v, "runtimes/mounts/kv/a", 8, 50)
			assertServing := func(when string) {
				t.Helper()
				var read readResult
				v.MustJSON(t, &read, "read", "runtimes/mounts/kv/a")
				var st mountState
				v.MustJSON(t, &st, "read", "runtimes/hosted/kv")
				if read.Data["v"] != "1" || st.Data.State != "running" || st.Data.Restarts != 0 || st.Data.ContainerID != before.Data.ContainerID {
					t.Fatalf("%s: read %v, mount %+v (before %s)", when, read.Data, st.Data, before.Data.ContainerID)
				}
			}
			assertServing("after 400 reads whose clients hung up")

			// Paused: reads whose clients give up stay in flight; the settings do
			// not wait on them (30 s is a hang, not a speed target).
			if out, err := runDocker("pause", before.Data.ContainerID); err != nil {
				t.Fatalf("docker pause: %v %s", err, out)
			}
			hangUp(t, v, "runtimes/mounts/kv/a", 8, 3)
			began := time.Now()
			var st mountState
			v.MustJSON(t, &st, "read", "runtimes/hosted/kv")
			if waited := time.Since(began); waited > 30*time.Second || st.Data.State != "running" {
				t.Errorf("the settings of a paused mount took %s: %+v", waited, st.Data)
			}
			if out, err := runDocker("unpause", before.Data.ContainerID); err != nil {
				t.Fatalf("docker unpause: %v %s", err, out)
			}
			assertServing("after a pause and unpause")
			v.Stop(t)
			testimage.AssertNoContainersOf(t, docker, v.ClusterID)
		})
	}
}
