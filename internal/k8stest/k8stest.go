// Package k8stest starts the project's test Kubernetes node
// (scripts/start-k8s.sh) for a test and stops it when the test ends.
//
// The node is real: etcd, kube-apiserver, kube-scheduler, containerd with
// runc and gVisor's runsc (RuntimeClass `runsc`), and a kubelet, all in a
// network namespace of its own. It needs root and the binaries that
// scripts/build-k8s.sh builds, named by $RC_K8S_BIN (`make test` sets it when
// run as root). Like the other tests on real parts it runs with RC_ACC=1 or
// CI=true, and when a part is missing it skips, except under CI=true where
// that is a failure.
//
// Images reach the node by `ctr images import` (Image), not through a
// registry: containerd lives in the node's network namespace, where the
// host's 127.0.0.1 is not reachable, and an import needs no registry at all.
package k8stest

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
)

// Node is a running test node.
type Node struct {
	// Kubeconfig is the admin kubeconfig (https://127.0.0.1:PORT, which
	// works on the host and inside Netns).
	Kubeconfig string
	// Netns is the node's network namespace file: nsenter --net=Netns
	// reaches pod IPs.
	Netns string
	// Containerd is containerd's socket.
	Containerd string
	// Name is the node's name.
	Name string
	// Bin holds kubectl, ctr and the other binaries of the node.
	Bin string

	cmd  *exec.Cmd
	mu   sync.Mutex
	errs bytes.Buffer // the script's stderr
	done chan struct{}
}

// startTimeout bounds the node's start: a few seconds to Ready once built.
const startTimeout = 3 * time.Minute

// Start starts a node and stops it in t.Cleanup.
func Start(t vaulttest.T) *Node {
	t.Helper()
	vaulttest.RequireAcceptance(t)
	const how = "run `make test` as root, or set RC_K8S_BIN=$(scripts/build-k8s.sh) and run as root"
	if os.Geteuid() != 0 {
		vaulttest.RequireReal(t, "root (the test Kubernetes node needs it)", how)
	}
	bin := os.Getenv("RC_K8S_BIN")
	if bin == "" {
		vaulttest.RequireReal(t, "the test Kubernetes node's binaries ($RC_K8S_BIN)", how)
	}
	if _, err := os.Stat(filepath.Join(bin, "kubelet")); err != nil {
		t.Fatalf("RC_K8S_BIN=%s: %v", bin, err)
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{Bin: bin, done: make(chan struct{})}
	n.cmd = exec.Command(filepath.Join(root, "scripts", "start-k8s.sh"))
	n.cmd.Env = append(os.Environ(), "RC_K8S_BIN="+bin, "RC_K8S_PARENT="+strconv.Itoa(os.Getpid()))
	n.cmd.Stderr = lockedWriter{&n.mu, &n.errs}
	// Should a process of the node outlive the script holding its stderr,
	// Wait still returns.
	n.cmd.WaitDelay = 10 * time.Second
	stdout, err := n.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop(t) })
	go func() {
		n.cmd.Wait()
		close(n.done)
	}()

	lines := make(chan string)
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	timeout := time.After(startTimeout)
	for ready := false; !ready; {
		select {
		case line, ok := <-lines:
			if !ok {
				<-n.done
				t.Fatalf("scripts/start-k8s.sh exited before the node was Ready (%v):\n%s", n.cmd.ProcessState, n.Stderr())
			}
			key, value, _ := strings.Cut(line, "=")
			switch key {
			case "KUBECONFIG":
				n.Kubeconfig = value
			case "RC_K8S_NETNS":
				n.Netns = value
			case "RC_K8S_CONTAINERD":
				n.Containerd = value
			case "RC_K8S_NODE":
				n.Name = value
			case "RC_K8S_READY":
				ready = true
			}
		case <-timeout:
			t.Fatalf("the node was not Ready within %v:\n%s", startTimeout, n.Stderr())
		}
	}
	go func() {
		for range lines {
		}
	}()
	t.Logf("test node %s Ready in %v", n.Name, time.Since(started).Round(time.Millisecond))
	return n
}

// Stop stops the node (the script removes everything it made) and waits for
// it. Stopping twice is harmless.
func (n *Node) Stop(t vaulttest.T) {
	t.Helper()
	select {
	case <-n.done:
		return
	default:
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(2 * time.Minute):
		n.cmd.Process.Kill()
		<-n.done
		t.Fatalf("scripts/start-k8s.sh did not stop within 2 minutes:\n%s", n.Stderr())
	}
}

// Stderr is what the script said so far.
func (n *Node) Stderr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.errs.String()
}

// Kubectl runs kubectl on the node and returns its stdout, failing the test
// when it fails.
func (n *Node) Kubectl(t vaulttest.T, args ...string) string {
	t.Helper()
	out, err := n.TryKubectl(args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// TryKubectl runs kubectl on the node; the error carries its stderr.
func (n *Node) TryKubectl(args ...string) (string, error) {
	return n.run(nil, "kubectl", append([]string{"--kubeconfig", n.Kubeconfig}, args...)...)
}

// Apply applies a manifest given as text.
func (n *Node) Apply(t vaulttest.T, manifest string) {
	t.Helper()
	if _, err := n.run(strings.NewReader(manifest), "kubectl", "--kubeconfig", n.Kubeconfig, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, manifest)
	}
}

// Image makes an image named ref (e.g. localhost/NAME:TAG) holding only the
// static binary, FROM scratch, with it as the entrypoint (at /BINARY-NAME),
// and imports it into the node's containerd: pods name it with
// imagePullPolicy: Never. It returns the image's ID (its config's digest,
// Vault's sha256).
func (n *Node) Image(t vaulttest.T, binary, ref string) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	tar := filepath.Join(vaulttest.ShortTempDir(t), "image.tar")
	if out, err := exec.Command(filepath.Join(root, "scripts", "k8s", "image.sh"), binary, ref, tar).CombinedOutput(); err != nil {
		t.Fatalf("scripts/k8s/image.sh: %v\n%s", err, out)
	}
	if _, err := n.run(nil, "ctr", "-a", n.Containerd, "-n", "k8s.io", "images", "import", tar); err != nil {
		t.Fatalf("importing %s: %v", ref, err)
	}
	id, err := archiveImageID(tar)
	if err != nil {
		t.Fatalf("the image of %s: %v", ref, err)
	}
	return id
}

// archiveImageID is the ID of the one image in a docker-archive: its
// config's digest, which manifest.json names.
func archiveImageID(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	r := tar.NewReader(f)
	for {
		h, err := r.Next()
		if err != nil {
			return "", fmt.Errorf("no manifest.json in %s: %w", path, err)
		}
		if filepath.Clean(h.Name) != "manifest.json" {
			continue
		}
		var m []struct{ Config string }
		if err := json.NewDecoder(r).Decode(&m); err != nil || len(m) != 1 {
			return "", fmt.Errorf("manifest.json of %s: %v (%d images)", path, err, len(m))
		}
		return strings.TrimSuffix(m[0].Config, ".json"), nil
	}
}

func (n *Node) run(stdin *strings.Reader, name string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(n.Bin, name), args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// BuildStatic builds the main package in dir (relative to the module root)
// as a static binary in a temporary directory and returns its path.
func BuildStatic(t vaulttest.T, dir string) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(vaulttest.ShortTempDir(t), filepath.Base(dir))
	cmd := exec.Command("go", "build", "-o", out, "./"+dir)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", dir, err, b)
	}
	return out
}

// moduleRoot is the directory of this project's go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
