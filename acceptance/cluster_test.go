package acceptance

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	vaultapi "github.com/hashicorp/vault/api"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/testimage"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// clusterClient sends one request to one node, as curl would, and never
// retries: what each attempt got is what the tests judge.
type clusterClient struct {
	http  *http.Client
	token string
}

func newClusterClient(token string) *clusterClient {
	return &clusterClient{token: token, http: &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16},
	}}
}

// do sends method path with body (JSON, or nothing) to the node; err is a
// transport error, else status and body are the node's answer.
func (c *clusterClient) do(node *vaulttest.Server, method, path string, body any, headers ...string) (int, []byte, http.Header, error) {
	var reader io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		reader = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, node.Addr+"/v1/"+path, reader)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("X-Vault-Token", c.token)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, resp.Header, err
}

// must sends the request and fails the test unless the answer is a 2xx.
func (c *clusterClient) must(t *testing.T, node *vaulttest.Server, method, path string, body any) []byte {
	t.Helper()
	code, data, _, err := c.do(node, method, path, body)
	if err != nil || code/100 != 2 {
		t.Fatalf("%s %s via %s: %d %v %s", method, path, node.NodeID, code, err, data)
	}
	return data
}

// dataOf decodes a response's data with numbers kept as written.
func dataOf(t *testing.T, body []byte) map[string]any {
	t.Helper()
	var envelope struct {
		Data map[string]any `json:"data"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&envelope); err != nil {
		t.Fatalf("decoding %.200s: %v", body, err)
	}
	return envelope.Data
}

func clusterRuntime(i int) (string, map[string]any) {
	oci := []string{"runc", "runsc"}[i%2]
	return fmt.Sprintf("rt-%03d", i), map[string]any{
		"oci_runtime":   oci,
		"cgroup_parent": fmt.Sprintf("/vault-plugins/rt%d", i),
		"cpu_nanos":     fmt.Sprint(10_000_000 + i),
		// Above 2^53: read back exactly or not at all.
		"memory_bytes": fmt.Sprint(int64(1)<<60 + int64(i)),
		"rootless":     i%3 == 0,
	}
}

func clusterPlugin(i int) (string, map[string]any) {
	return fmt.Sprintf("p-%02d", i), map[string]any{
		"oci_image": fmt.Sprintf("registry.example/plugins/plugin-%d", i),
		"version":   fmt.Sprintf("v1.%d.0", i),
		"sha256":    fmt.Sprintf("%064x", i+1),
		"runtime":   fmt.Sprintf("rt-%03d", i),
		"args":      []string{fmt.Sprintf("-n=%d", i)},
	}
}

// assertReadsBack reads path through node and compares every field with
// what was written (numbers as their exact text).
func assertReadsBack(t *testing.T, c *clusterClient, node *vaulttest.Server, path string, want map[string]any) {
	t.Helper()
	got := dataOf(t, c.must(t, node, "GET", path, nil))
	for k, w := range want {
		if fmt.Sprint(got[k]) != fmt.Sprint(w) {
			t.Errorf("%s via %s: %s = %v, want %v", path, node.NodeID, k, got[k], w)
		}
	}
}

func (c *clusterClient) listKeys(t *testing.T, node *vaulttest.Server, path string) []string {
	t.Helper()
	return listKeysOf(t, c.must(t, node, "LIST", path, nil))
}

// ownedBy counts the plugin containers of the cluster whose owner label
// names one of pids.
func ownedBy(t *testing.T, docker *client.Client, clusterID string, pids []int) int {
	t.Helper()
	list, err := docker.ContainerList(context.Background(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", runtime.LabelClusterID+"="+clusterID))})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ctr := range list {
		for _, pid := range pids {
			if strings.HasPrefix(ctr.Labels[runtime.LabelOwner], fmt.Sprint(pid)+":") {
				n++
			}
		}
	}
	return n
}

// stopCluster stops the cluster and asserts that no plugin process and no
// container of it is left.
func stopCluster(t *testing.T, c *vaulttest.Cluster, docker *client.Client) {
	t.Helper()
	if pids := c.Stop(t); len(pids) > 0 {
		t.Errorf("plugin processes left 30 s after the cluster stopped: %v", pids)
		for _, s := range c.Nodes {
			t.Logf("%s log:\n%s", s.NodeID, s.Log())
		}
	}
	testimage.AssertNoContainersOf(t, docker, c.Nodes[0].ClusterID)
}

// startTestCluster starts a 3-node cluster with the plugin at runtimes/,
// builds the kv image, and returns a client and the active node and a
// standby.
func startTestCluster(t *testing.T, k vaulttest.Kind) (*client.Client, string, *vaulttest.Cluster, *clusterClient, *vaulttest.Server, *vaulttest.Server) {
	t.Helper()
	docker := testimage.Docker(t)
	kvID := testimage.BuildKV(t, docker)
	var clusterID string
	testimage.ReapCluster(t, docker, &clusterID) // runs after the cluster's own cleanups
	c := k.StartCluster(t, 3, "runtimes")
	clusterID = c.Nodes[0].ClusterID
	leader := c.Leader(t, 30*time.Second, nil)
	return docker, kvID, c, newClusterClient(c.Token), leader, c.Standbys(leader)[0]
}

// The leader of a 3-node Raft cluster is killed with SIGKILL: a new leader
// serves the whole catalog and the hosted mount's data within 30 s, and of
// the writes racing the failover none acknowledged is lost.
func TestClusterLeaderKilled(t *testing.T) { vaulttest.EachServer(t, testClusterLeaderKilled) }

func testClusterLeaderKilled(t *testing.T, k vaulttest.Kind) {
	docker, kvID, c, cl, leader, standby := startTestCluster(t, k)

	// 200 runtimes and 50 plugins written through a standby.
	runtimes := map[string]map[string]any{}
	for i := 0; i < 200; i++ {
		name, fields := clusterRuntime(i)
		runtimes[name] = fields
		cl.must(t, standby, "POST", "runtimes/catalog/container/"+name, fields)
	}
	plugins := map[string]map[string]any{}
	for i := 0; i < 50; i++ {
		name, fields := clusterPlugin(i)
		plugins[name] = fields
		cl.must(t, standby, "POST", "runtimes/plugins/catalog/secret/"+name, fields)
	}
	// A hosted kv mount with 100 secrets, through the standby too.
	cl.must(t, standby, "POST", "runtimes/catalog/container/kv-rt", map[string]any{"oci_runtime": "runc", "memory_bytes": "134217728"})
	cl.must(t, standby, "POST", "runtimes/plugins/catalog/secret/kv", map[string]any{
		"oci_image": testimage.KVName, "version": testimage.KVVersion, "sha256": kvID, "runtime": "kv-rt"})
	cl.must(t, standby, "POST", "runtimes/hosted/kv", map[string]any{"plugin": "kv"})
	for i := 0; i < 100; i++ {
		cl.must(t, standby, "POST", fmt.Sprintf("runtimes/mounts/kv/app/s%03d", i), map[string]any{"value": fmt.Sprint("secret-", i)})
	}
	oldPlugins := leader.PluginProcesses()
	if len(oldPlugins) == 0 || ownedBy(t, docker, leader.ClusterID, oldPlugins) == 0 {
		t.Fatalf("before the kill: plugin processes %v on the leader, and none of their containers", oldPlugins)
	}

	// 8 clients write distinct runtimes, each to the nodes in turn, from
	// before the kill until well after a new leader serves.
	var (
		acked, failed sync.Map // name -> answer
		stop          atomic.Bool
		wg            sync.WaitGroup
		ackedAfter    atomic.Int64
		killed        atomic.Bool
	)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				name := fmt.Sprintf("race-%d-%04d", g, i)
				node := c.Nodes[(g+i)%len(c.Nodes)]
				code, body, _, err := cl.do(node, "POST", "runtimes/catalog/container/"+name, map[string]any{"oci_runtime": "runc", "cpu_nanos": fmt.Sprint(10_000_000 + i)})
				switch {
				case err == nil && code/100 == 2:
					acked.Store(name, i)
					if killed.Load() {
						ackedAfter.Add(1)
					}
				case err == nil && code/100 == 4:
					t.Errorf("write %s via %s: %d %s: a client error, not a failover's", name, node.NodeID, code, body)
				default:
					failed.Store(name, fmt.Sprintf("%d %v %.120s", code, err, body))
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	time.Sleep(2 * time.Second)

	killed.Store(true)
	leader.Kill(t)
	killedAt := time.Now()
	newLeader := c.Leader(t, 30*time.Second, leader)
	for {
		code, _, _, err := cl.do(newLeader, "GET", "runtimes/catalog/container/rt-000", nil)
		if err == nil && code == 200 {
			break
		}
		if time.Since(killedAt) > 30*time.Second {
			t.Fatalf("no answer from the new leader %s within 30 s of the kill: %d %v", newLeader.NodeID, code, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%s answered %.1f s after %s was killed", newLeader.NodeID, time.Since(killedAt).Seconds(), leader.NodeID)
	time.Sleep(3 * time.Second)
	stop.Store(true)
	wg.Wait()
	if ackedAfter.Load() == 0 {
		t.Errorf("no write was acknowledged after the kill")
	}

	other := c.Standbys(newLeader)[0]
	// Every runtime and plugin reads back exactly, through both nodes left.
	for _, node := range []*vaulttest.Server{newLeader, other} {
		for name, fields := range runtimes {
			assertReadsBack(t, cl, node, "runtimes/catalog/container/"+name, fields)
		}
		for name, fields := range plugins {
			assertReadsBack(t, cl, node, "runtimes/plugins/catalog/secret/"+name, fields)
		}
	}
	// Acknowledged writes are all there; the lists hold exactly what reads.
	listed := map[string]bool{}
	for _, k := range cl.listKeys(t, other, "runtimes/catalog/container") {
		listed[k] = true
	}
	nAcked, nFailed := 0, 0
	acked.Range(func(k, v any) bool {
		nAcked++
		if !listed[k.(string)] {
			t.Errorf("runtime %s was acknowledged and is gone", k)
		}
		return true
	})
	failed.Range(func(k, v any) bool {
		nFailed++
		if listed[k.(string)] {
			t.Logf("runtime %s failed (%s) but was stored: the leader died after the commit, before the answer", k, v)
		}
		return true
	})
	t.Logf("racing writes: %d acknowledged (%d after the kill), %d failed with an error", nAcked, ackedAfter.Load(), nFailed)
	for name := range runtimes {
		if !listed[name] {
			t.Errorf("runtime %s missing from the list", name)
		}
	}
	var wantPlugins []string
	for name := range plugins {
		wantPlugins = append(wantPlugins, name)
	}
	wantPlugins = append(wantPlugins, "kv")
	sort.Strings(wantPlugins)
	if got := cl.listKeys(t, other, "runtimes/plugins/catalog/secret"); !reflect.DeepEqual(got, wantPlugins) {
		t.Errorf("plugin list after the failover: %v", got)
	}
	// A runtime in use still cannot be deleted.
	code, body, _, err := cl.do(newLeader, "DELETE", "runtimes/catalog/container/rt-007", nil)
	if err != nil || code != 400 || !strings.Contains(string(body), `unable to delete \"rt-007\" runtime. Registered plugins=[secret/p-07]`) {
		t.Errorf("deleting a runtime in use after the failover: %d %v %s", code, err, body)
	}

	// The hosted mount: every secret through the new leader, and writes.
	for i := 0; i < 100; i++ {
		got := dataOf(t, cl.must(t, newLeader, "GET", fmt.Sprintf("runtimes/mounts/kv/app/s%03d", i), nil))
		if got["value"] != fmt.Sprint("secret-", i) {
			t.Errorf("secret s%03d after the failover: %v", i, got)
		}
	}
	cl.must(t, other, "POST", "runtimes/mounts/kv/app/after", map[string]any{"value": "written after"})
	if got := dataOf(t, cl.must(t, newLeader, "GET", "runtimes/mounts/kv/app/after", nil)); got["value"] != "written after" {
		t.Errorf("a write after the failover reads back %v", got)
	}

	// The killed leader's plugin saw its Vault go and stopped, with its
	// container; the new leader's plugin kept its own.
	deadline := time.Now().Add(20 * time.Second)
	for len(leader.PluginProcesses()) > 0 || ownedBy(t, docker, leader.ClusterID, oldPlugins) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the killed leader's plugin processes %v or their containers (%d) are still there",
				leader.PluginProcesses(), ownedBy(t, docker, leader.ClusterID, oldPlugins))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := ownedBy(t, docker, leader.ClusterID, newLeader.PluginProcesses()); n != 1 {
		t.Errorf("the new leader's plugin runs %d containers, want 1 (the kv mount)", n)
	}
	stopCluster(t, c, docker)
}

// A standby forwards every request to the active node: its answers are the
// active node's, compressed lists included; and a graceful step-down moves
// leadership with no failure that Vault does not itself call retryable.
func TestClusterStandbyAndStepDown(t *testing.T) {
	vaulttest.EachServer(t, testClusterStandbyAndStepDown)
}

func testClusterStandbyAndStepDown(t *testing.T, k vaulttest.Kind) {
	docker, kvID, c, cl, leader, standby := startTestCluster(t, k)
	standby.CompressLists(t, "runtimes")
	for i := 0; i < 50; i++ {
		name, fields := clusterRuntime(i)
		cl.must(t, standby, "POST", "runtimes/catalog/container/"+name, fields)
	}
	hostKV(t, standby, kvID, "runc", "kv")
	cl.must(t, standby, "POST", "runtimes/mounts/kv/app/db", map[string]any{"password": "hunter2"})

	// The same answers through the standby as through the active node.
	listVia := func(node *vaulttest.Server, gz bool) (map[string]any, string) {
		headers := []string{}
		if gz {
			headers = []string{"Accept-Encoding", "gzip"}
		}
		code, body, h, err := cl.do(node, "LIST", "runtimes/catalog/container", nil, headers...)
		if err != nil || code != 200 {
			t.Fatalf("list via %s: %d %v %s", node.NodeID, code, err, body)
		}
		if h.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if body, err = io.ReadAll(zr); err != nil {
				t.Fatal(err)
			}
		}
		return dataOf(t, body), h.Get("Content-Encoding")
	}
	for _, gz := range []bool{false, true} {
		want, wantEnc := listVia(leader, gz)
		got, gotEnc := listVia(standby, gz)
		if !reflect.DeepEqual(got, want) || gotEnc != wantEnc || (gz && gotEnc != "gzip") || len(got["keys"].([]any)) != 51 {
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(want)
			t.Fatalf("list (gzip asked: %v) via the standby: %s %.2000s\nvia the active node: %s %.2000s", gz, gotEnc, g, wantEnc, w)
		}
	}
	for _, path := range []string{"runtimes/catalog/container/rt-001", "runtimes/mounts/kv/app/db"} {
		want := dataOf(t, cl.must(t, leader, "GET", path, nil))
		if got := dataOf(t, cl.must(t, standby, "GET", path, nil)); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s via the standby %v, via the active node %v", path, got, want)
		}
	}

	// Clients read, write and read the hosted mount through every node
	// while the active node steps down.
	var (
		stop              atomic.Bool
		wg                sync.WaitGroup
		ok, retryable     atomic.Int64
		acked             sync.Map
		mu                sync.Mutex
		retryableExamples []string
	)
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				node := c.Nodes[(g+i)%len(c.Nodes)]
				var method, path string
				var body any
				switch i % 3 {
				case 0:
					method, path = "GET", fmt.Sprintf("runtimes/catalog/container/rt-%03d", i%50)
				case 1:
					method, path = "POST", fmt.Sprintf("runtimes/catalog/container/step-%d-%04d", g, i)
					body = map[string]any{"oci_runtime": "runc"}
				default:
					method, path = "GET", "runtimes/mounts/kv/app/db"
				}
				code, data, _, err := cl.do(node, method, path, body)
				if err == nil && code/100 == 2 {
					ok.Add(1)
					if method == "POST" {
						acked.Store(path, true)
					}
					continue
				}
				// Vault's own client decides what is worth retrying.
				var resp *http.Response
				if err == nil {
					resp = &http.Response{StatusCode: code}
				}
				if retry, _ := vaultapi.DefaultRetryPolicy(context.Background(), resp, err); !retry {
					t.Errorf("%s %s via %s during the step-down: %d %v %s", method, path, node.NodeID, code, err, data)
					continue
				}
				retryable.Add(1)
				mu.Lock()
				retryableExamples = append(retryableExamples, fmt.Sprintf("%s %d %v %.100s", node.NodeID, code, err, data))
				mu.Unlock()
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	time.Sleep(2 * time.Second)
	leader.MustRun(t, "operator", "step-down")
	newLeader := c.Leader(t, 30*time.Second, leader)
	eventually(t, "the hosted mount on "+newLeader.NodeID, func() error {
		code, body, _, err := cl.do(newLeader, "GET", "runtimes/mounts/kv/app/db", nil)
		if err != nil || code != 200 {
			return fmt.Errorf("%d %v %s", code, err, body)
		}
		return nil
	})
	time.Sleep(3 * time.Second)
	stop.Store(true)
	wg.Wait()
	if len(retryableExamples) > 3 {
		retryableExamples = retryableExamples[:3]
	}
	t.Logf("step-down %s -> %s: %d answered, %d failed as retryable, such as %q", leader.NodeID, newLeader.NodeID, ok.Load(), retryable.Load(), retryableExamples)
	acked.Range(func(k, _ any) bool {
		cl.must(t, newLeader, "GET", k.(string), nil)
		return true
	})
	if got := dataOf(t, cl.must(t, newLeader, "GET", "runtimes/mounts/kv/app/db", nil)); got["password"] != "hunter2" {
		t.Errorf("hosted secret after the step-down: %v", got)
	}
	stopCluster(t, c, docker)
}
