package kubernetes

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// fakeCarrier plays the carrier's side of the tunnels (carrier/tunnel.go
// has the real one, tested there) on 127.0.0.1, for the host's side.
type fakeCarrier struct {
	ln net.Listener
}

func startFakeCarrier(t *testing.T) *fakeCarrier {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	old := carrierPort
	carrierPort = ln.Addr().(*net.TCPAddr).Port
	t.Cleanup(func() { carrierPort = old })
	return &fakeCarrier{ln: ln}
}

// next accepts the host's next connection and returns its request line.
func (f *fakeCarrier) next(t *testing.T) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	f.ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	conn, err := f.ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return conn, r, line
}

// The host's side of a tunnel: it asks the carrier for one and names the
// path the carrier answers; on ACCEPT it joins a DATA connection to its
// own socket; when its socket goes (the backend it served is cleaned up),
// it closes the tunnel; once the pod stops, it opens none.
func TestHostSideOfATunnel(t *testing.T) {
	fc := startFakeCarrier(t)
	old := tunnelSweep
	tunnelSweep = 20 * time.Millisecond
	t.Cleanup(func() { tunnelSweep = old })
	e, _ := fakeEngine(t)
	c := &container{e: e, spec: testSpec(), name: "rc-1-kv", podIP: "127.0.0.1"}

	// The host's broker socket, as go-plugin makes it.
	sock := filepath.Join(t.TempDir(), "plugin123")
	broker, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		network, path string
		err           error
	}
	opened := make(chan result, 1)
	go func() {
		n, p, err := c.HostToPlugin("unix", sock)
		opened <- result{n, p, err}
	}()
	control, _, line := fc.next(t)
	name, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "TUNNEL LISTEN ")
	if !ok || len(name) != 16 {
		t.Fatalf("the host asked %q", line)
	}
	fmt.Fprintf(control, "OK %s/tunnel-%s\n", runtime.PluginSocketDir, name)
	if r := <-opened; r.err != nil || r.network != "unix" || r.path != runtime.PluginSocketDir+"/tunnel-"+name {
		t.Fatalf("HostToPlugin: %+v", r)
	}

	fmt.Fprint(control, "ACCEPT\n")
	data, dr, line := fc.next(t)
	if line != "TUNNEL DATA "+name+"\n" {
		t.Fatalf("the host's data connection asked %q", line)
	}
	broker.(*net.UnixListener).SetDeadline(time.Now().Add(5 * time.Second))
	hostSide, err := broker.Accept()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(data, "to the host")
	if got, err := bufio.NewReader(hostSide).ReadString('\n'); err != nil || got != "to the host\n" {
		t.Fatalf("the broker got %q, %v", got, err)
	}
	fmt.Fprintln(hostSide, "to the plugin")
	if got, err := dr.ReadString('\n'); err != nil || got != "to the plugin\n" {
		t.Fatalf("the plugin's side got %q, %v", got, err)
	}
	hostSide.Close()

	// The broker's socket goes: the tunnel's control is closed.
	broker.Close()
	control.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(control); err != nil {
		t.Fatalf("the control was not closed after the host's socket went: %v", err)
	}

	// A carrier that answers otherwise opens no tunnel, and says so; once
	// the pod stops, the host keeps none.
	answer := func(reply string) {
		go func() {
			conn, err := fc.ln.Accept()
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			bufio.NewReader(conn).ReadString('\n')
			fmt.Fprint(conn, reply)
			io.Copy(io.Discard, conn)
		}()
	}
	answer("ERR no\n")
	if _, _, err := c.HostToPlugin("unix", sock); err == nil || !strings.Contains(err.Error(), `opened no tunnel: it answered "ERR no\n"`) {
		t.Fatalf("a refused tunnel: %v", err)
	}
	c.closeTunnels()
	answer("OK " + runtime.PluginSocketDir + "/tunnel-x\n")
	if _, _, err := c.HostToPlugin("unix", sock); err == nil || !strings.Contains(err.Error(), "is stopping") {
		t.Fatalf("a tunnel of a stopped pod: %v", err)
	}
	if _, _, err := c.HostToPlugin("tcp", "127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "only a Unix socket") {
		t.Fatalf("a TCP socket: %v", err)
	}
}
