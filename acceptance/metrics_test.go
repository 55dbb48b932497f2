package acceptance

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/testimage"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
)

// scrapePolicy is the README's: a token that may scrape the metrics and
// nothing else.
const scrapePolicy = `path "runtimes/metrics" { capabilities = ["read"] }`

// A real Prometheus scrapes a hosted kv's metrics through the server with a
// token that may do nothing else: the request count rises under load, a
// docker kill shows as a restart with its cause, and the memory gauge lies
// between 0 and the runtime's memory_bytes.
func TestPrometheusScrapesThroughTheServer(t *testing.T) {
	vaulttest.EachServer(t, testPrometheusScrapesThroughTheServer)
}

func testPrometheusScrapesThroughTheServer(t *testing.T, k vaulttest.Kind) {
	prometheus := prometheusBinary(t)
	docker := testimage.Docker(t)
	kvID := testimage.BuildKV(t, docker)
	v := k.StartDev(t, "runtimes")
	const limit = 134217728
	v.MustRun(t, "write", "runtimes/catalog/container/metered", "oci_runtime=runc", "memory_bytes="+strconv.Itoa(limit))
	v.MustRun(t, "write", "runtimes/plugins/catalog/secret/kv", "oci_image="+testimage.KVName, "version="+testimage.KVVersion,
		"sha256="+kvID, "runtime=metered")
	v.MustRun(t, "write", "runtimes/hosted/kv", "plugin=kv")
	v.MustRun(t, "write", "runtimes/mounts/kv/app", "password=hunter2")

	if _, _, code := v.RunInput(t, v.Token, strings.NewReader(scrapePolicy), "policy", "write", "scrape", "-"); code != 0 {
		t.Fatal("writing the scrape policy")
	}
	token := strings.TrimSpace(v.MustRun(t, "token", "create", "-policy=scrape", "-field=token"))
	if _, errOut, code := v.RunAs(t, token, "read", "runtimes/mounts/kv/app"); code != 2 || !strings.Contains(errOut, "permission denied") {
		t.Fatalf("the scrape token read the hosted data: exit %d %s", code, errOut)
	}

	prom := startPrometheus(t, prometheus, v.Addr, token)
	reads := func() float64 {
		return prom.value(t, `sum(runtime_catalog_hosted_requests_total{mount="kv",operation="read",outcome="ok"})`)
	}
	prom.eventually(t, "the first scrape", `runtime_catalog_hosted_state{mount="kv",state="running"}`, func(v float64) bool { return v == 1 })
	start := max(reads(), 0) // -1: no read counted yet
	for i := 0; i < 200; i++ {
		if err := httpRead(v, "/v1/runtimes/mounts/kv/app"); err != nil {
			t.Fatal(err)
		}
	}
	prom.eventually(t, "the reads counted", `sum(runtime_catalog_hosted_requests_total{mount="kv",operation="read",outcome="ok"})`,
		func(v float64) bool { return v >= start+200 })
	memory := prom.eventually(t, "the memory gauge", `runtime_catalog_hosted_memory_bytes{mount="kv"}`, func(v float64) bool { return v > 0 })
	if memory > limit {
		t.Fatalf("memory gauge %v over the runtime's memory_bytes %d", memory, limit)
	}
	prom.eventually(t, "the memory limit", `runtime_catalog_hosted_memory_limit_bytes{mount="kv"}`, func(v float64) bool { return v == limit })

	var st mountState
	v.MustJSON(t, &st, "read", "runtimes/hosted/kv")
	if out, err := runDocker("kill", st.Data.ContainerID); err != nil {
		t.Fatalf("docker kill: %v %s", err, out)
	}
	v.MustRun(t, "read", "runtimes/mounts/kv/app") // restarts it
	prom.eventually(t, "the restart and its cause", `runtime_catalog_hosted_restarts_total{mount="kv",cause="signal"}`,
		func(v float64) bool { return v == 1 })
	prom.eventually(t, "the catalog's counts", `runtime_catalog_hosted_mounts`, func(v float64) bool { return v == 1 })

	v.MustRun(t, "delete", "runtimes/hosted/kv")
	v.Stop(t)
	testimage.AssertNoContainersOf(t, docker, v.ClusterID)
}

func prometheusBinary(t *testing.T) string {
	t.Helper()
	vaulttest.RequireAcceptance(t)
	if bin := os.Getenv("PROMETHEUS_BINARY"); bin != "" {
		return bin
	}
	if bin, err := exec.LookPath("prometheus"); err == nil {
		return bin
	}
	vaulttest.RequireReal(t, "a Prometheus server", "run `make test` as root (scripts/install-prometheus.sh installs Debian's prometheus), or set PROMETHEUS_BINARY")
	return ""
}

// promServer is a Prometheus server of the test's, on a free port.
type promServer struct{ addr string }

// startPrometheus starts Prometheus scraping the server's runtimes/metrics
// every second with token, as the README's configuration does.
func startPrometheus(t *testing.T, bin, serverAddr, token string) *promServer {
	t.Helper()
	dir := vaulttest.ShortTempDir(t)
	target := strings.TrimPrefix(serverAddr, "http://")
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
scrape_configs:
  - job_name: runtimes
    metrics_path: /v1/runtimes/metrics
    authorization:
      credentials: %s
    static_configs:
      - targets: [%q]
`, token, target)
	configPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", vaulttest.FreePort(t))
	cmd := exec.Command(bin, "--config.file="+configPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr)
	log, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		log.Close()
		if t.Failed() {
			out, _ := os.ReadFile(log.Name())
			t.Logf("prometheus log:\n%s", out)
		}
	})
	p := &promServer{addr: addr}
	eventually(t, "prometheus ready", func() error {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s", resp.Status)
		}
		return nil
	})
	return p
}

// value is the query's one value now, or -1 when it has none.
func (p *promServer) value(t *testing.T, query string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.addr + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var answer struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Value [2]interface{} `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil || answer.Status != "success" {
		t.Fatalf("query %s: %v %+v", query, err, answer)
	}
	if len(answer.Data.Result) != 1 {
		return -1
	}
	v, err := strconv.ParseFloat(answer.Data.Result[0].Value[1].(string), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// eventually waits until the query's value is ok (Prometheus scrapes every
// second), and returns it.
func (p *promServer) eventually(t *testing.T, what, query string, ok func(float64) bool) float64 {
	t.Helper()
	var last float64
	deadline := time.Now().Add(60 * time.Second)
	for {
		if last = p.value(t, query); ok(last) {
			return last
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s is %v", what, query, last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// httpRead reads a path with the server's root token.
func httpRead(v *vaulttest.Server, path string) error {
	req, _ := http.NewRequest("GET", v.Addr+path, nil)
	req.Header.Set("X-Vault-Token", v.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return nil
}
