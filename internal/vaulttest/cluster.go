package vaulttest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Cluster is a Vault cluster of real processes on 127.0.0.1 with
// integrated (Raft) storage, TLS off on the API listeners (the cluster port
// is always TLS), and this plugin registered and enabled.
type Cluster struct {
	Nodes     []*Server
	Token     string
	UnsealKey string
	// Dir holds each node's directory: config, data, plugin directory,
	// log and TMPDIR.
	Dir string
}

// StartCluster starts n Vault servers that join one another with
// retry_join, initialises the first, unseals all, waits until every node
// is a voter, and registers the plugin by its sha256 and enables it at
// path. Every node has its own plugin directory holding the same binary:
// Vault runs a plugin from the directory of the node that is active, and
// checks it against the sha256 registered in the replicated catalog.
func (k Kind) StartCluster(t T, n int, path string) *Cluster {
	t.Helper()
	c := &Cluster{Dir: ShortTempDir(t)}
	// Registered before the servers' own cleanups, so it runs after them:
	// a node killed with SIGKILL leaves its plugin process behind (the
	// plugin ends itself once it sees, but a test must not rely on that).
	// A plugin killed here leaves its containers: see testimage.ReapCluster.
	t.Cleanup(func() { KillProcessesUnder(c.Dir) })
	ports := FreePorts(t, 2*n)
	var joins strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&joins, "  retry_join { leader_api_addr = \"http://127.0.0.1:%d\" }\n", ports[2*i])
	}
	for i := 0; i < n; i++ {
		nodeID := fmt.Sprintf("node%d", i+1)
		dir := filepath.Join(c.Dir, nodeID)
		for _, sub := range []string{"data", "plugins"} {
			if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		BuildPlugin(t, filepath.Join(dir, "plugins"))
		addr := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i])
		config := k.mlockLine() + fmt.Sprintf(`api_addr         = %q
cluster_addr     = "https://127.0.0.1:%d"
plugin_directory = %q
ui               = false

listener "tcp" {
  address         = "127.0.0.1:%d"
  cluster_address = "127.0.0.1:%d"
  tls_disable     = true
}

storage "raft" {
  path    = %q
  node_id = %q
  # The default (5) multiplies election and heartbeat timeouts by five.
  performance_multiplier = 1
%s}
`, addr, ports[2*i+1], filepath.Join(dir, "plugins"), ports[2*i], ports[2*i+1], filepath.Join(dir, "data"), nodeID, joins.String())
		configPath := filepath.Join(dir, "vault.hcl")
		if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		s := k.start(t, addr, "", dir, "server", "-config="+configPath)
		s.NodeID = nodeID
		c.Nodes = append(c.Nodes, s)
	}
	t.Cleanup(func() { c.Stop(t) })
	for _, s := range c.Nodes {
		s.WaitReady(t)
	}

	var keys struct {
		UnsealKeys []string `json:"unseal_keys_b64"`
		RootToken  string   `json:"root_token"`
	}
	first := c.Nodes[0]
	out := first.MustRun(t, "operator", "init", "-key-shares=1", "-key-threshold=1", "-format=json")
	if err := json.Unmarshal([]byte(out), &keys); err != nil {
		t.Fatalf("vault operator init: %v\n%s", err, out)
	}
	c.Token, c.UnsealKey = keys.RootToken, keys.UnsealKeys[0]
	for _, s := range c.Nodes {
		s.Token = c.Token
		// A joining node takes the key only once its retry_join has fetched
		// the leader's challenge: unseal until it says it is unsealed.
		Eventually(t, 60*time.Second, s.NodeID+" unsealed", func() error {
			s.Run(t, "operator", "unseal", c.UnsealKey)
			if sealed, err := s.Sealed(); err != nil || sealed {
				return fmt.Errorf("sealed=%v %v", sealed, err)
			}
			return nil
		})
	}
	first.readClusterID(t)
	for _, s := range c.Nodes[1:] {
		s.ClusterID = first.ClusterID
	}
	// Joined nodes are non-voters until autopilot promotes them (about 14
	// s): a step-down before that goes nowhere.
	Eventually(t, 90*time.Second, "every node a voter", func() error {
		peers := c.Peers(t, first)
		voters := 0
		for _, p := range peers {
			if p.Voter {
				voters++
			}
		}
		if voters != n {
			return fmt.Errorf("%d of %d voters: %+v", voters, n, peers)
		}
		return nil
	})

	sum, err := FileSHA256(filepath.Join(first.Dir, "plugins", PluginName))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range c.Nodes[1:] {
		if other, err := FileSHA256(filepath.Join(s.Dir, "plugins", PluginName)); err != nil || other != sum {
			t.Fatalf("%s's plugin binary differs from node1's (%s, %v): Vault would skip the mount there", s.NodeID, other, err)
		}
	}
	first.MustRun(t, "plugin", "register", "-sha256="+sum, "secret", PluginName)
	first.MustRun(t, "secrets", "enable", "-path="+path, PluginName)
	// OpenBao's standbys answer what they can themselves (they forward
	// writes, and every request of this plugin's), so a request reaches the
	// new mount through a standby only once that standby has read the new
	// mount table, a moment after the enable. Vault's standbys forward it
	// all, and pass at once.
	enabled := time.Now()
	defer func() {
		t.Logf("every node serves %s/ %v after the enable", path, time.Since(enabled).Round(time.Millisecond))
	}()
	for _, s := range c.Nodes {
		Eventually(t, 30*time.Second, s.NodeID+" serving "+path+"/", func() error {
			out, errOut, code := s.Run(t, "secrets", "list", "-format=json")
			if code != 0 || !strings.Contains(out, `"`+path+`/"`) {
				return fmt.Errorf("exit %d: %s%s", code, out, errOut)
			}
			return nil
		})
	}
	return c
}

// Stop stops every node, the active one first, and returns the plugin
// processes still running 30 s later. A node that stops after losing its
// quorum exits without stopping its plugin; the plugin sees its Vault gone
// and stops itself, with its containers: that is what is waited for.
func (c *Cluster) Stop(t T) []int {
	var nodes []*Server
	for _, s := range c.Nodes {
		if active, _ := s.IsActive(); active {
			nodes = append([]*Server{s}, nodes...)
		} else {
			nodes = append(nodes, s)
		}
	}
	for _, s := range nodes {
		s.Stop(t)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(ProcessesUnder(c.Dir)) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	return ProcessesUnder(c.Dir)
}

// Peer is a server of the Raft configuration.
type Peer struct {
	NodeID  string `json:"node_id"`
	Address string `json:"address"`
	Leader  bool   `json:"leader"`
	Voter   bool   `json:"voter"`
}

// Peers is the Raft configuration as the node via sees it.
func (c *Cluster) Peers(t T, via *Server) []Peer {
	t.Helper()
	var out struct {
		Data struct {
			Config struct {
				Servers []Peer `json:"servers"`
			} `json:"config"`
		} `json:"data"`
	}
	stdout, _, code := via.Run(t, "operator", "raft", "list-peers", "-format=json")
	if code != 0 {
		return nil
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		return nil
	}
	return out.Data.Config.Servers
}

// Leader waits up to timeout for a running node other than except to be
// the active node, unsealed, and returns it.
func (c *Cluster) Leader(t T, timeout time.Duration, except *Server) *Server {
	t.Helper()
	var leader *Server
	Eventually(t, timeout, "an active node", func() error {
		for _, s := range c.Nodes {
			if s == except || s.Exited() {
				continue
			}
			if active, err := s.IsActive(); err == nil && active {
				leader = s
				return nil
			}
		}
		return fmt.Errorf("none of the running nodes is active")
	})
	return leader
}

// Standbys are the running nodes other than leader.
func (c *Cluster) Standbys(leader *Server) []*Server {
	var out []*Server
	for _, s := range c.Nodes {
		if s != leader && !s.Exited() {
			out = append(out, s)
		}
	}
	return out
}

// IsActive reports whether the server is unsealed and the active node, by
// its unauthenticated sys/leader.
func (s *Server) IsActive() (bool, error) {
	var leader struct {
		IsSelf bool `json:"is_self"`
	}
	if err := s.getJSON("/v1/sys/leader", &leader); err != nil {
		return false, err
	}
	sealed, err := s.Sealed()
	return leader.IsSelf && !sealed, err
}

// Sealed reports the server's seal status.
func (s *Server) Sealed() (bool, error) {
	var status struct {
		Sealed bool `json:"sealed"`
	}
	err := s.getJSON("/v1/sys/seal-status", &status)
	return status.Sealed, err
}

func (s *Server) getJSON(path string, v any) error {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(s.Addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// Exited reports whether the server process has ended.
func (s *Server) Exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// PluginProcesses are the pids of the processes running a binary from the
// server's plugin directory: its plugins, or ones it left when killed.
func (s *Server) PluginProcesses() []int {
	return ProcessesUnder(filepath.Join(s.Dir, "plugins"))
}

// ProcessesUnder are the live processes whose executable (as started: the
// first word of their command line) lies under dir.
func ProcessesUnder(dir string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(cmdline) == 0 {
			continue // gone, or a zombie: a killed Vault's children are never reaped
		}
		argv0, _, _ := strings.Cut(string(cmdline), "\x00")
		if strings.HasPrefix(argv0, dir+string(filepath.Separator)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// KillProcessesUnder kills (SIGKILL) the processes ProcessesUnder(dir)
// names and waits up to 10 s for them to be gone.
func KillProcessesUnder(dir string) {
	for _, pid := range ProcessesUnder(dir) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for i := 0; i < 100 && len(ProcessesUnder(dir)) > 0; i++ {
		time.Sleep(100 * time.Millisecond)
	}
}

// FreePorts returns n distinct loopback ports nothing listens on right now.
func FreePorts(t T, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		// Held open until all are picked, so that none is handed out twice.
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// Eventually retries f every 200 ms until it succeeds or timeout passes,
// then fails the test with f's last error.
func Eventually(t T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
