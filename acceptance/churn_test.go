package acceptance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/testimage"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
)

// vaultHTTP sends one request to Vault's HTTP API with the root token and
// returns its status (0 when it did not get an answer).
// tally counts answers by operation and status, from many goroutines,
// keeping the first body of each status to show when one is wrong.
type tally struct {
	mu      sync.Mutex
	counts  map[string]map[int]int
	samples map[int]string
}

func newTally() *tally {
	return &tally{counts: map[string]map[int]int{}, samples: map[int]string{}}
}

func (t *tally) add(op string, code int, body string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.counts[op] == nil {
		t.counts[op] = map[int]int{}
	}
	t.counts[op][code]++
	if _, ok := t.samples[code]; !ok {
		t.samples[code] = op + ": " + body
	}
}

// byOp is the counts; read once the goroutines are done.
func (t *tally) byOp() map[string]map[int]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.counts
}

func (t *tally) sample(code int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.samples[code]
}

func vaultHTTP(v *vaulttest.Server, method, path string, body map[string]interface{}) int {
	code, _ := vaultHTTPBody(v, method, path, body)
	return code
}

// vaultHTTPBody sends a request with the root token, from any goroutine:
// a failure to send is status 0.
func vaultHTTPBody(v *vaulttest.Server, method, path string, body map[string]interface{}) (int, string) {
	var reader *bytes.Reader
	if body != nil {
		encoded, _ := json.Marshal(body)
		reader = bytes.NewReader(encoded)
	} else {
		reader = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, v.Addr+"/v1/"+path, reader)
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("X-Vault-Token", v.Token)
	client := &http.Client{Timeout: 2 * time.Minute}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(answer)
}

// Clients creating, deleting and reloading one mount name while others
// read and write it: afterwards the mount's state and the engine's
// containers agree, and no container is orphaned.
func TestChurnOnOneMountName(t *testing.T) { vaulttest.EachServer(t, testChurnOnOneMountName) }

func testChurnOnOneMountName(t *testing.T, k vaulttest.Kind) {
	docker := testimage.Docker(t)
	kvID := testimage.BuildKV(t, docker)
	v := k.StartDev(t, "runtimes")
	hostKV(t, v, kvID, "runc")
	var wg sync.WaitGroup
	answers := newTally()
	count := func(op string, code int) { answers.add(op, code, "") }
	deadline := time.Now().Add(15 * time.Second)
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; i < 200 && time.Now().Before(deadline); i++ {
				switch {
				case c >= 4 && i%2 == 0:
					count("data write", vaultHTTP(v, http.MethodPut, "runtimes/mounts/churn/a", map[string]interface{}{"v": i}))
				case c >= 4:
					count("data read", vaultHTTP(v, http.MethodGet, "runtimes/mounts/churn/a", nil))
				case (c+i)%3 == 0:
					count("create", vaultHTTP(v, http.MethodPut, "runtimes/hosted/churn", map[string]interface{}{"plugin": "kv"}))
				case (c+i)%3 == 1:
					count("delete", vaultHTTP(v, http.MethodDelete, "runtimes/hosted/churn?force=true", nil))
				default:
					count("reload", vaultHTTP(v, http.MethodPut, "runtimes/plugins/reload", map[string]interface{}{"mounts": "churn"}))
				}
			}
		}(c)
	}
	wg.Wait()
	answered := answers.byOp()
	t.Logf("answers by operation and status: %v", answered)
	for op, codes := range answered {
		if codes[0] > 0 || codes[500] > 0 {
			t.Errorf("%s: %d without an answer, %d internal errors", op, codes[0], codes[500])
		}
		if strings.HasPrefix(op, "create") && codes[200]+codes[204] == 0 {
			t.Errorf("no create succeeded: %v", codes)
		}
	}

	var st mountState
	stored := vaultHTTP(v, http.MethodGet, "runtimes/hosted/churn", nil) == 200
	running := containersOf(t, docker, v.ClusterID)
	if stored {
		v.MustRun(t, "write", "runtimes/mounts/churn/a", "v=last")
		v.MustJSON(t, &st, "read", "runtimes/hosted/churn")
		running = containersOf(t, docker, v.ClusterID)
		if st.Data.State != "running" || len(running) != 1 || !strings.HasPrefix(st.Data.ContainerID, strings.Fields(running[0])[0]) {
			t.Fatalf("the mount left: %+v; containers %v", st.Data, running)
		}
	} else if len(running) != 0 {
		t.Fatalf("no mount left, but containers %v", running)
	}
	v.Stop(t)
	testimage.AssertNoContainersOf(t, docker, v.ClusterID)
}

// Reloads under traffic: Vault's own reload of this plugin (which stops
// every hosted container with it) and this plugin's reload of one mount,
// repeated while clients read and write the mount. Every request gets an
// answer that says what happened; afterwards the mount serves from one
// container, with the last write, and nothing is orphaned.
func TestReloadsUnderTraffic(t *testing.T) { vaulttest.EachServer(t, testReloadsUnderTraffic) }

func testReloadsUnderTraffic(t *testing.T, k vaulttest.Kind) {
	docker := testimage.Docker(t)
	kvID := testimage.BuildKV(t, docker)
	v := k.StartDev(t, "runtimes")
	hostKV(t, v, kvID, "runc", "kv")
	v.MustRun(t, "write", "runtimes/mounts/kv/a", "v=0")

	answers := newTally()
	count := answers.add
	var stop atomic.Bool
	var wg sync.WaitGroup
	for c := 0; c < 6; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				if c%2 == 0 {
					code, body := vaultHTTPBody(v, http.MethodPut, "runtimes/mounts/kv/a", map[string]interface{}{"v": fmt.Sprint(c, "-", i)})
					count("data write", code, body)
				} else {
					code, body := vaultHTTPBody(v, http.MethodGet, "runtimes/mounts/kv/a", nil)
					count("data read", code, body)
				}
			}
		}(c)
	}
	for i := 0; i < 3; i++ {
		time.Sleep(time.Second)
		code, body := vaultHTTPBody(v, http.MethodPut, "sys/plugins/reload/backend", map[string]interface{}{"mounts": "runtimes/"})
		count("vault reload", code, body)
		time.Sleep(time.Second)
		code, body = vaultHTTPBody(v, http.MethodPut, "runtimes/plugins/reload", map[string]interface{}{"mounts": "kv"})
		count("mount reload", code, body)
	}
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()
	answered := answers.byOp()
	t.Logf("answers by operation and status: %v", answered)
	for code, sample := range answers.samples {
		if code >= 300 {
			t.Logf("%d, for one: %s", code, sample)
		}
	}
	for op, codes := range answered {
		for code, n := range codes {
			if code == 0 || code == 500 || (strings.HasSuffix(op, "reload") && code != 200) {
				t.Errorf("%s: %d answered %d: %s", op, n, code, answers.sample(code))
			}
		}
	}
	v.MustRun(t, "write", "runtimes/mounts/kv/a", "v=last")
	var read readResult
	v.MustJSON(t, &read, "read", "runtimes/mounts/kv/a")
	st := waitForState(t, v, "kv", "running")
	running := containersOf(t, docker, v.ClusterID)
	if read.Data["v"] != "last" || len(running) != 1 || !strings.HasPrefix(st.Data.ContainerID, strings.Fields(running[0])[0]) {
		t.Fatalf("after the reloads: %v, %+v, containers %v", read.Data, st.Data, running)
	}
	v.Stop(t)
	testimage.AssertNoContainersOf(t, docker, v.ClusterID)
}
