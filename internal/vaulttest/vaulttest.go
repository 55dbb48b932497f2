// Package vaulttest starts real Vault servers with this plugin mounted and
// drives them with the real vault CLI, for acceptance tests and benchmarks.
//
// Tests on real parts are opt-in, like the models' VAULT_ACC: they run with
// RC_ACC=1 (`make test` sets it) or under CI=true, and skip otherwise, so
// `make unit` stays fast even where an engine answers. The vault binary comes
// from $VAULT_BINARY (scripts/build-vault.sh builds it; `make test` sets it).
// When a test runs and a real part is missing, it is skipped, except under
// CI=true where that is a failure.
package vaulttest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// T is the part of testing.TB these helpers use, so that the benchmark
// program can drive a Vault with them too.
type T interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	Failed() bool
}

// PluginName is the name the plugin is registered and enabled under.
const PluginName = "vault-plugin-runtime-catalog"

// RequireAcceptance skips a test on real parts unless they were asked for.
func RequireAcceptance(t T) {
	t.Helper()
	if os.Getenv("RC_ACC") == "" && os.Getenv("CI") != "true" {
		t.Skipf("a test on a real Vault or Docker Engine: set RC_ACC=1 to run it (make test does)")
	}
}

// RequireReal fails (under CI=true) or skips the test when something real it
// needs is missing; how tells the reader how to provide it.
func RequireReal(t T, what, how string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing, and CI=true: %s", what, how)
	}
	t.Skipf("%s is missing: %s", what, how)
}

// Binary returns the vault binary to test with.
func Binary(t T) string {
	t.Helper()
	RequireAcceptance(t)
	bin := os.Getenv("VAULT_BINARY")
	if bin == "" {
		RequireReal(t, "a vault binary ($VAULT_BINARY)", "run `make test`, or export VAULT_BINARY=$(scripts/build-vault.sh)")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("VAULT_BINARY=%s: %v", bin, err)
	}
	return bin
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// BuildPlugin builds the plugin binary once per test process and copies it
// into dir, returning its path.
func BuildPlugin(t T, dir string) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "rc-build")
		if buildErr != nil {
			return
		}
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		cmd := exec.Command("go", "build", "-o", filepath.Join(buildDir, PluginName), "./cmd/"+PluginName)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building the plugin: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	dst := filepath.Join(dir, PluginName)
	copyExecutable(t, filepath.Join(buildDir, PluginName), dst)
	return dst
}

// BuildCommand builds a command of this module (a package path such as
// ./internal/probeplugin), statically, to out.
func BuildCommand(t T, pkg, out string) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if output, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", pkg, err, output)
	}
	return out
}

// RemoveBuild removes the directory BuildPlugin built into; a test binary
// that builds the plugin calls it from TestMain when its tests are done.
func RemoveBuild() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

func copyExecutable(t T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

// FreePort returns a loopback port nothing listens on right now.
func FreePort(t T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ShortTempDir is a temporary directory with a short path: Unix socket paths
// are limited to about 108 bytes, and t.TempDir() paths are long.
func ShortTempDir(t T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

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
	bin    string
	cmd    *exec.Cmd
	log    *lockedBuffer
	done   chan struct{}
}

// StartDev starts `vault server -dev` with this plugin in its plugin
// directory and enables it at path. Extra plugin binaries are copied into the
// directory too: dev mode registers each under its file name.
func StartDev(t T, path string, extraPlugins ...string) *Server {
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
	s := start(t, fmt.Sprintf("http://127.0.0.1:%d", port), "root", dir,
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
func start(t T, addr, token, dir string, args ...string) *Server {
	t.Helper()
	tmp := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: addr, Token: token, TempDir: tmp, Dir: dir, bin: Binary(t), log: &lockedBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(s.bin, args...)
	s.cmd.Env = append(os.Environ(), "VAULT_LOG_LEVEL=info", "TMPDIR="+tmp)
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

// Run runs the vault CLI against the server with the server's token.
func (s *Server) Run(t T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return s.RunAs(t, s.Token, args...)
}

// RunAs runs the vault CLI with another token.
func (s *Server) RunAs(t T, token string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return s.RunInput(t, token, nil, args...)
}

// RunInput runs the vault CLI with a token and standard input.
func (s *Server) RunInput(t T, token string, stdin io.Reader, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.bin, args...)
	cmd.Env = append(os.Environ(), "VAULT_ADDR="+s.Addr, "VAULT_TOKEN="+token, "VAULT_FORMAT=", "NO_COLOR=1")
	cmd.Stdin = stdin
	cmd.WaitDelay = 5 * time.Second // never hang on an output pipe once the CLI is gone
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code = 0
	if err != nil {
		exitErr, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("vault %v: %v", args, err)
		}
		code = exitErr.ExitCode()
	}
	return out.String(), errOut.String(), code
}

// MustRun runs the vault CLI and fails the test unless it exits 0.
func (s *Server) MustRun(t T, args ...string) string {
	t.Helper()
	out, errOut, code := s.Run(t, args...)
	if code != 0 {
		t.Fatalf("vault %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// MustJSON runs the vault CLI with -format=json after the subcommand and
// decodes its output.
func (s *Server) MustJSON(t T, v interface{}, args ...string) {
	t.Helper()
	withFormat := append([]string{args[0], "-format=json"}, args[1:]...)
	out := s.MustRun(t, withFormat...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("vault %v: decoding %q: %v", args, out, err)
	}
}

// CompressLists lets lists through the mount at path answer with gzip, as
// the README says: the mount passes Accept-Encoding in and lets
// Content-Encoding and Vary out, and the plugin is told it may use them.
func (s *Server) CompressLists(t T, path string) {
	t.Helper()
	s.MustRun(t, "secrets", "tune", "-passthrough-request-headers=Accept-Encoding",
		"-allowed-response-headers=Content-Encoding", "-allowed-response-headers=Vary", path+"/")
	s.MustRun(t, "write", path+"/config", "compress_lists=true")
}

// StartPersistent starts a non-dev server with file storage in dir (created
// on first use) on port, initialising it when new and unsealing it. The
// plugin is registered and enabled at path the first time.
func StartPersistent(t T, dir string, port int, path string) *Server {
	t.Helper()
	addr := fmt.Sprintf("http://127.0.0.1:%d", port)
	config := fmt.Sprintf(`storage "file" { path = %q }
listener "tcp" {
  address     = "127.0.0.1:%d"
  tls_disable = true
}
disable_mlock    = true
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

	s := start(t, addr, "", dir, "server", "-config="+configPath)
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

// FileSHA256 is the hex SHA-256 of a file, as `vault plugin register` wants.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
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
