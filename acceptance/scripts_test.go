package acceptance

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/testimage"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
)

// script is one of the project's scripts run as a person runs it, in a
// process group of its own, so that a Ctrl-C (SIGINT to the group) reaches
// it and everything it started.
type script struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan error
}

func (s *script) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.Write(p)
}

func (s *script) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

func startScript(t *testing.T, env []string, name string, args ...string) *script {
	t.Helper()
	s := &script{cmd: exec.Command(name, args...), done: make(chan error, 1)}
	s.cmd.Dir = ".."
	s.cmd.Env = append(os.Environ(), env...)
	s.cmd.Stdout, s.cmd.Stderr = s, s
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL) // if the test ended before its Ctrl-C
	})
	return s
}

// await waits for text in the output, failing if the script ends first.
func (s *script) await(t *testing.T, text string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(s.output(), text) {
		select {
		case err := <-s.done:
			s.done <- err
			t.Fatalf("%s ended (%v) before printing %q:\n%s", s.cmd.Path, err, text, s.output())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not print %q within %s:\n%s", s.cmd.Path, text, timeout, s.output())
		}
	}
}

// interrupt sends the Ctrl-C and returns the script's exit.
func (s *script) interrupt(t *testing.T) error {
	t.Helper()
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGINT)
	select {
	case err := <-s.done:
		return err
	case <-time.After(90 * time.Second):
		t.Fatalf("%s did not stop on Ctrl-C:\n%s", s.cmd.Path, s.output())
		return nil
	}
}

// hints are the commands a script printed for pasting: its lines indented
// by two spaces, less the ones that are not commands.
func hints(out string, skip func(string) bool) string {
	var lines []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "  ") && !skip(strings.TrimSpace(line)) {
			lines = append(lines, strings.TrimPrefix(line, "  "))
		}
	}
	return strings.Join(lines, "\n")
}

func runHints(t *testing.T, what, commands string) string {
	t.Helper()
	cmd := exec.Command("bash", "-euo", "pipefail", "-x", "-c", commands)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s, pasted as printed, fail (%v):\n%s\n--- output:\n%s", what, err, commands, out)
	}
	return string(out)
}

// make dev, as a person runs it: its hints work when pasted (the README
// test runs them too), Ctrl-C exits 0 and says where the log is, and the
// log is still there.
func TestMakeDevStopsCleanlyAndKeepsItsLog(t *testing.T) {
	vaulttest.EachServer(t, testMakeDevStopsCleanlyAndKeepsItsLog)
}

func testMakeDevStopsCleanlyAndKeepsItsLog(t *testing.T, k vaulttest.Kind) {
	k.Binary(t)                               // the script finds it as make test does, through $VAULT_BINARY or $BAO_BINARY
	testimage.BuildKV(t, testimage.Docker(t)) // kv-plugin:0.25.0, which make dev would build
	if out, err := exec.Command("make", "-C", "..", "build").CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	tmp := vaulttest.ShortTempDir(t)
	addr := fmt.Sprintf("127.0.0.1:%d", vaulttest.FreePort(t))
	dev := startScript(t, []string{"RC_DEV_ADDR=" + addr, "TMPDIR=" + tmp, "SERVER=" + k.Name}, "scripts/dev.sh")
	dev.await(t, "Ctrl-C stops the server.", 5*time.Minute)
	runHints(t, "make dev's hints", hints(dev.output(), func(string) bool { return false }))
	if err := dev.interrupt(t); err != nil {
		t.Fatalf("make dev's Ctrl-C: %v\n%s", err, dev.output())
	}
	log := filepath.Join(tmp, "vault-plugin-runtime-catalog-dev.log")
	if !strings.Contains(dev.output(), k.Product+" stopped; its log is "+log) {
		t.Fatalf("the stop does not say where the log is:\n%s", dev.output())
	}
	if content, err := os.ReadFile(log); err != nil || !strings.Contains(string(content), "path=runtimes/") {
		t.Fatalf("the log after the stop: %v\n%s", err, content)
	}
}

// make cluster, as a person runs it: it shows progress while it starts, its
// hints work when pasted (a step-down, then the active node killed, found
// anew), it then prints the addresses still up, and Ctrl-C exits 0.
func TestMakeClusterHintsHoldAfterAStepDown(t *testing.T) {
	vaulttest.EachServer(t, testMakeClusterHintsHoldAfterAStepDown)
}

func testMakeClusterHintsHoldAfterAStepDown(t *testing.T, k vaulttest.Kind) {
	binary := k.Binary(t)
	testimage.Docker(t)
	cluster := startScript(t, []string{"SERVER=" + k.Name}, "scripts/cluster.sh")
	cluster.await(t, "starting a 3-node "+k.Product+" Raft cluster", 5*time.Minute)
	cluster.await(t, "Ctrl-C stops the cluster.", 5*time.Minute)
	if !strings.Contains(cluster.output(), " 5 s ") {
		t.Errorf("no progress while it started:\n%s", cluster.output())
	}
	commands := hints(cluster.output(), func(line string) bool {
		return strings.HasPrefix(line, "node") || strings.HasPrefix(line, "#")
	})
	runHints(t, "make cluster's hints", commands)
	cluster.await(t, "exited. Still up: ", time.Minute)
	after := cluster.output()[strings.LastIndex(cluster.output(), "exited. Still up: "):]
	var exported string
	for _, line := range strings.Split(after, "\n") {
		if strings.HasPrefix(line, "  export "+k.EnvPrefix+"ADDR=") {
			exported = strings.TrimPrefix(line, "  ")
		}
	}
	token := strings.Fields(strings.SplitN(strings.SplitN(cluster.output(), k.EnvPrefix+"TOKEN=", 2)[1], "\n", 2)[0])[0]
	runHints(t, "the address printed after the kill", exported+" "+k.EnvPrefix+"TOKEN="+token+" PATH="+filepath.Dir(binary)+":$PATH\n"+
		"for i in $(seq 60); do "+k.CLI+" read runtimes/catalog/container/limited && exit 0; sleep 1; done; exit 1")
	if err := cluster.interrupt(t); err != nil {
		t.Fatalf("make cluster's Ctrl-C: %v\n%s", err, cluster.output())
	}
}
