package vaulttest

import (
	"bufio"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// StartDevIn is StartDev with the server, and so the plugins it starts,
// in the network namespace netns (a test Kubernetes node's, where pod IPs
// are reached): nothing it sends to a pod leaves that namespace. The CLI
// reaches it on the host's 127.0.0.1 through forward (the node's
// rc-k8s-forward), on the same port as inside.
func (k Kind) StartDevIn(t T, netns, forward, path string, extraPlugins ...string) *Server {
	t.Helper()
	return k.startDev(t, &inNetns{netns, forward}, path, extraPlugins...)
}

// inNetns is a network namespace to run a server in, and the forwarder
// that carries the host's connections into it.
type inNetns struct{ netns, forward string }

// forwardInto carries the host's 127.0.0.1:port to the same port in netns
// until the test ends.
func forwardInto(t T, forward, netns string, port int) {
	t.Helper()
	cmd := exec.Command(forward, "-netns", netns, "-to", "127.0.0.1", "-port", fmt.Sprint(port))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", forward, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(l)
	}()
	select {
	case got := <-line:
		if got != fmt.Sprint(port) {
			t.Fatalf("%s listens on %q, not %d", forward, got, port)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not start", forward)
	}
}
