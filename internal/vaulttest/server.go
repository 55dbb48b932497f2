package vaulttest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

// Server is a running vault server.
type Server struct {
	Addr  string
	Token string
	// TempDir is the server's and its plugins' TMPDIR.
	TempDir string
	// ClusterID is the Vault cluster's ID, once unsealed: the label its
	// plugin containers carry.
	ClusterID string
	// Dir is the server's directory (its plugins are in Dir/plugins).
	Dir string
	// NodeID names a node of a cluster (StartCluster).
	NodeID string
	// Kind is the server: Vault or OpenBao.
	Kind Kind
	bin  string
	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan struct{}
}

// StartDev starts `vault server -dev` (or `bao server -dev`) with this plugin in its plugin
// directory and enables it at path. Extra plugin binaries are copied into the
// directory too: dev mode registers each under its file name.
func (k Kind) StartDev(t T, path string, extraPlugins ...string) *Server {
	t.Helper()
	return k.startDev(t, nil, path, extraPlugins...)
}

// startDev is StartDev, the server run in the network namespace in names
// when it is set.
func (k Kind) startDev(t T, in *inNetns, path string, extraPlugins ...string) *Server {
	t.Helper()
	dir := ShortTempDir(t)
	pluginDir := filepath.Join(dir, "plugins")
	if err := os.Mkdir(pluginDir, 0o755); err != nil {
		t.Fatal(err)
	}
	BuildPlugin(t, pluginDir)
	for _, extra := range extraPlugins {
		copyExecutable(t, extra, filepath.Join(pluginDir, filepath.Base(extra)))
	}
	port := FreePort(t)
	var wrap []string
	if in != nil {
		wrap = []string{"nsenter", "--net=" + in.netns, "--"}
		forwardInto(t, in.forward, in.netns, port)
	}
	s := k.startWrapped(t, wrap, fmt.Sprintf("http://127.0.0.1:%d", port), "root", dir,
		"server", "-dev", "-dev-root-token-id=root", fmt.Sprintf("-dev-listen-address=127.0.0.1:%d", port),
		"-dev-plugin-dir="+pluginDir, "-dev-no-store-token")
	s.WaitReady(t)
	s.readClusterID(t)
	s.MustRun(t, "secrets", "enable", "-path="+path, PluginName)
	return s
}

func (s *Server) readClusterID(t T) {
	t.Helper()
	var status struct {
		ClusterID string `json:"cluster_id"`
	}
	s.MustJSON(t, &status, "status")
	s.ClusterID = status.ClusterID
}

// start runs vault with args. Its plugin processes inherit its environment,
// and TMPDIR makes what they leave in temp (go-plugin's sockets, the socket
// directories) land in dir, which the test removes: a plugin killed with
// SIGKILL cannot remove its own.
func (k Kind) start(t T, addr, token, dir string, args ...string) *Server {
	t.Helper()
	return k.startWrapped(t, nil, addr, token, dir, args...)
}

func (k Kind) startWrapped(t T, wrap []string, addr, token, dir string, args ...string) *Server {
	t.Helper()
	tmp := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: addr, Token: token, TempDir: tmp, Dir: dir, Kind: k, bin: k.Binary(t), log: &lockedBuffer{}, done: make(chan struct{})}
	if len(wrap) > 0 {
		s.cmd = exec.Command(wrap[0], append(append(wrap[1:len(wrap):len(wrap)], s.bin), args...)...)
	} else {
		s.cmd = exec.Command(s.bin, args...)
	}
	s.cmd.Env = append(os.Environ(), k.EnvPrefix+"LOG_LEVEL=info", "TMPDIR="+tmp)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() { s.Stop(t) })
	return s
}

// Stop ends the server and waits for it; its log is printed if the test failed.
func (s *Server) Stop(t T) {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	if t.Failed() {
		t.Logf("vault server %s log:\n%s", s.NodeID, s.log.String())
	}
}

// Pid is the server's process ID.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Log is what the server has printed so far.
func (s *Server) Log() string { return s.log.String() }

// Kill ends the server with SIGKILL, as a crash would: its plugin
// processes are left running.
func (s *Server) Kill(t T) {
	t.Helper()
	s.cmd.Process.Kill()
	<-s.done
}

// WaitReady polls `vault status` until the server answers (sealed or not).
func (s *Server) WaitReady(t T) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, _, code := s.Run(t, "status")
		if code == 0 || code == 2 { // 2: answering, but sealed
			return
		}
		select {
		case <-s.done:
			t.Fatalf("vault server exited:\n%s", s.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("vault server did not answer in time:\n%s", s.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// StartPersistent starts a non-dev server with file storage in dir (created
// on first use) on port, initialising it when new and unsealing it. The
// plugin is registered and enabled at path the first time.
func (k Kind) StartPersistent(t T, dir string, port int, path string) *Server {
	t.Helper()
	addr := fmt.Sprintf("http://127.0.0.1:%d", port)
	config := k.mlockLine() + fmt.Sprintf(`storage "file" { path = %q }
listener "tcp" {
  address     = "127.0.0.1:%d"
  tls_disable = true
}
api_addr         = %q
plugin_directory = %q
`, filepath.Join(dir, "data"), port, addr, filepath.Join(dir, "plugins"))
	configPath := filepath.Join(dir, "vault.hcl")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	keysPath := filepath.Join(dir, "init.json")
	fresh := false
	if _, err := os.Stat(keysPath); os.IsNotExist(err) {
		fresh = true
		if err := os.MkdirAll(filepath.Join(dir, "plugins"), 0o755); err != nil {
			t.Fatal(err)
		}
		BuildPlugin(t, filepath.Join(dir, "plugins"))
	}

	s := k.start(t, addr, "", dir, "server", "-config="+configPath)
	s.WaitReady(t)
	var keys struct {
		UnsealKeys []string `json:"unseal_keys_b64"`
		RootToken  string   `json:"root_token"`
	}
	if fresh {
		out := s.MustRun(t, "operator", "init", "-key-shares=1", "-key-threshold=1", "-format=json")
		if err := os.WriteFile(keysPath, []byte(out), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(keysPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &keys); err != nil {
		t.Fatal(err)
	}
	s.Token = keys.RootToken
	s.MustRun(t, "operator", "unseal", keys.UnsealKeys[0])
	s.readClusterID(t)
	if fresh {
		sum, err := FileSHA256(filepath.Join(dir, "plugins", PluginName))
		if err != nil {
			t.Fatal(err)
		}
		s.MustRun(t, "plugin", "register", "-sha256="+sum, "secret", PluginName)
		s.MustRun(t, "secrets", "enable", "-path="+path, PluginName)
	}
	return s
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// EnableAuth registers this project's plugin as an auth method as well
// (a dev server registers it as a secrets engine only, the type its
// Factory reports without a mount config) and enables it at auth/PATH.
func (s *Server) EnableAuth(t T, path string) {
	t.Helper()
	sum, err := FileSHA256(filepath.Join(s.Dir, "plugins", PluginName))
	if err != nil {
		t.Fatal(err)
	}
	s.MustRun(t, "plugin", "register", "-sha256="+sum, "auth", PluginName)
	s.MustRun(t, "auth", "enable", "-path="+path, PluginName)
}
