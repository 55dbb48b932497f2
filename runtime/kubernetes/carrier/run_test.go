package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The fake plugin is this test binary run again with envFake set: it
// listens on a socket in PLUGIN_UNIX_SOCKET_DIR, prints a handshake line as
// go-plugin does, echoes what its one connection sends and ends as told
// ("exit N", "kill").
const envFake = "RC_CARRIER_FAKE_PLUGIN"

func TestMain(m *testing.M) {
	if os.Getenv(envFake) == "1" {
		fakePlugin()
		return
	}
	os.Exit(m.Run())
}

func fakePlugin() {
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "RC_CARRIER_PORT=") || strings.HasPrefix(kv, "RC_CARRIER_ADMIT=") {
			fmt.Fprintln(os.Stderr, "the carrier's settings reached the plugin:", kv)
			os.Exit(3)
		}
	}
	path := filepath.Join(os.Getenv("PLUGIN_UNIX_SOCKET_DIR"), "plugin.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(4)
	}
	fmt.Fprintln(os.Stderr, "fake plugin starting")
	fmt.Printf("1|5|unix|%s|grpc|CERT\n", path)
	conn, err := ln.Accept()
	if err != nil {
		os.Exit(5)
	}
	s := bufio.NewScanner(conn)
	linger := false
	for first := true; s.Scan(); first = false {
		line := s.Text()
		if first {
			// The session's first byte, as TLS's: sessionFrom sends it.
			line = strings.TrimPrefix(line, "\x16")
		}
		if line == "linger" {
			// Lives on after its connection ends, as a go-plugin server
			// does: only a signal ends it.
			linger = true
		}
		if code, ok := strings.CutPrefix(line, "exit "); ok {
			n, _ := strconv.Atoi(code)
			os.Exit(n)
		}
		if line == "kill" {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
		fmt.Fprintln(conn, "echo "+line)
	}
	if linger {
		select {}
	}
	os.Exit(0)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startFake runs the carrier in this process with the fake plugin as its
// child, admitting admit only.
func startFake(t *testing.T, admit string) (*carrier, *syncBuffer, *syncBuffer, string) {
	t.Setenv(envFake, "1")
	t.Setenv("PLUGIN_UNIX_SOCKET_DIR", t.TempDir())
	t.Setenv(envPort, "0")
	t.Setenv(envAdmit, admit)
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	c, code := start([]string{os.Args[0]}, "0", admit, stdout, stderr)
	if c == nil {
		t.Fatalf("start: code %d: %s", code, stderr)
	}
	return c, stdout, stderr, strconv.Itoa(c.ln.Addr().(*net.TCPAddr).Port)
}

func dialFrom(t *testing.T, from, port string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	return conn
}

// sessionFrom opens a session from address from: a connection whose first
// byte is TLS's, as go-plugin's session is.
func sessionFrom(t *testing.T, from, port string) net.Conn {
	t.Helper()
	conn := dialFrom(t, from, port)
	conn.Write([]byte{tlsHandshake})
	return conn
}

// closedUnread reports whether the carrier closed conn without carrying it.
func closedUnread(conn net.Conn) bool {
	fmt.Fprintln(conn, "hello")
	_, err := bufio.NewReader(conn).ReadString('\n')
	return err == io.EOF || (err != nil && strings.Contains(err.Error(), "reset"))
}

// A connection from an address that is not the host's is closed without
// touching the plugin's one session, which the host then gets; a second
// connection from the host is closed too; the plugin's exit code is the
// carrier's; its output passes through unchanged.
func TestAdmitsOnlyTheHostOnce(t *testing.T) {
	c, stdout, stderr, port := startFake(t, "127.0.0.2, 10.0.0.9")

	stranger := dialFrom(t, "127.0.0.1", port)
	if !closedUnread(stranger) {
		t.Fatal("a connection from 127.0.0.1 (not admitted) was carried")
	}
	host := sessionFrom(t, "127.0.0.2", port)
	r := bufio.NewReader(host)
	fmt.Fprintln(host, "ping")
	if line, err := r.ReadString('\n'); err != nil || line != "echo ping\n" {
		t.Fatalf("the host's connection: %q, %v (stderr: %s)", line, err, stderr)
	}
	if again := sessionFrom(t, "127.0.0.2", port); !closedUnread(again) {
		t.Fatal("a second connection from the host took the session")
	}
	fmt.Fprintln(host, "exit 7")
	if code := c.wait(); code != 7 {
		t.Fatalf("exit code %d, want the plugin's 7 (stderr: %s)", code, stderr)
	}
	if !strings.HasPrefix(stdout.String(), "1|5|unix|") || !strings.HasSuffix(stdout.String(), "|grpc|CERT\n") {
		t.Fatalf("stdout was not passed through unchanged: %q", stdout)
	}
	for _, want := range []string{"fake plugin starting", "closed a connection from 127.0.0.1 (not the host's address)", "(the plugin's one session is taken)"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

// A plugin killed by a signal exits the carrier with 128+N, as the kubelet
// and a shell say it.
func TestSignalDeathIs128PlusN(t *testing.T) {
	c, _, stderr, port := startFake(t, "127.0.0.1")
	host := sessionFrom(t, "127.0.0.1", port)
	fmt.Fprintln(host, "kill")
	if code := c.wait(); code != 128+9 {
		t.Fatalf("exit code %d, want 137 (stderr: %s)", code, stderr)
	}
}

func TestRefusesWithoutAdmittedAddresses(t *testing.T) {
	var stderr bytes.Buffer
	if code := run([]string{"/bin/true"}, "0", " , ", io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), envAdmit) {
		t.Fatalf("code %d: %s", code, stderr.String())
	}
	stderr.Reset()
	if code := run([]string{"/no/such/plugin"}, "0", "127.0.0.1", io.Discard, &stderr); code != 127 {
		t.Fatalf("a missing plugin: code %d: %s", code, stderr.String())
	}
}

// SIGTERM (a pod deleted from outside) reaches the plugin only once the
// host's session is over: the plugin serves the host's requests in flight
// until the host closes it. Without a session it is passed at once.
func TestSIGTERMWaitsForTheSession(t *testing.T) {
	c, _, stderr, port := startFake(t, "127.0.0.1")
	host := sessionFrom(t, "127.0.0.1", port)
	r := bufio.NewReader(host)
	fmt.Fprintln(host, "linger")
	fmt.Fprintln(host, "before")
	r.ReadString('\n')
	if line, err := r.ReadString('\n'); err != nil || line != "echo before\n" {
		t.Fatalf("%q, %v (stderr: %s)", line, err, stderr)
	}
	c.signal(syscall.SIGTERM)
	time.Sleep(100 * time.Millisecond) // a SIGTERM passed on would have ended it by now
	fmt.Fprintln(host, "after")
	if line, err := r.ReadString('\n'); err != nil || line != "echo after\n" {
		t.Fatalf("after SIGTERM: %q, %v (stderr: %s)", line, err, stderr)
	}
	// The session's end passes the held SIGTERM on: the plugin, which
	// would live on, ends by it.
	host.(*net.TCPConn).CloseWrite()
	if code := c.wait(); code != 128+int(syscall.SIGTERM) {
		t.Fatalf("exit code %d, want 143 from the SIGTERM passed on (stderr: %s)", code, stderr)
	}
	if !strings.Contains(stderr.String(), "SIGTERM with the host's session open") {
		t.Fatalf("stderr: %s", stderr)
	}

	c, _, stderr, _ = startFake(t, "127.0.0.1")
	time.Sleep(100 * time.Millisecond) // the fake plugin's default SIGTERM action
	c.signal(syscall.SIGTERM)
	if code := c.wait(); code != 128+int(syscall.SIGTERM) {
		t.Fatalf("without a session: exit code %d, want 143 (stderr: %s)", code, stderr)
	}
}

// Once the session is taken, the host opens tunnels: a socket in the
// plugin's socket directory whose connections the carrier announces on the
// control connection and joins to the host's next connection for it. A
// tunnel's socket goes with its control; a connection for a tunnel that is
// not open, or that asks for none, is closed.
func TestTunnels(t *testing.T) {
	c, _, stderr, port := startFake(t, "127.0.0.1")
	session := sessionFrom(t, "127.0.0.1", port)
	fmt.Fprintln(session, "hello")
	bufio.NewReader(session).ReadString('\n')

	control := dialFrom(t, "127.0.0.1", port)
	fmt.Fprint(control, "TUNNEL LISTEN abc123\n")
	cr := bufio.NewReader(control)
	line, err := cr.ReadString('\n')
	path, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "OK ")
	if err != nil || !ok || filepath.Dir(path) != os.Getenv("PLUGIN_UNIX_SOCKET_DIR") {
		t.Fatalf("LISTEN: %q %v (stderr: %s)", line, err, stderr)
	}
	plugin, err := net.Dial("unix", path) // as the plugin's broker dials
	if err != nil {
		t.Fatal(err)
	}
	defer plugin.Close()
	if line, err := cr.ReadString('\n'); err != nil || line != "ACCEPT\n" {
		t.Fatalf("the control said %q, %v", line, err)
	}
	data := dialFrom(t, "127.0.0.1", port)
	fmt.Fprint(data, "TUNNEL DATA abc123\n")
	fmt.Fprintln(data, "from the host")
	fmt.Fprintln(plugin, "from the plugin")
	if got, err := bufio.NewReader(plugin).ReadString('\n'); err != nil || got != "from the host\n" {
		t.Fatalf("the plugin got %q, %v", got, err)
	}
	if got, err := bufio.NewReader(data).ReadString('\n'); err != nil || got != "from the plugin\n" {
		t.Fatalf("the host got %q, %v", got, err)
	}

	dup := dialAndSay(t, port, "TUNNEL LISTEN abc123\n")
	if line, _ := bufio.NewReader(dup).ReadString('\n'); line != "ERR the tunnel abc123 is open already\n" {
		t.Errorf("a second LISTEN of an open tunnel: %q", line)
	}
	if !closedUnread(dialAndSay(t, port, "TUNNEL DATA ffff\n")) {
		t.Error("a connection for a tunnel that is not open was carried")
	}
	if !closedUnread(dialAndSay(t, port, "GET / HTTP/1.1\r\n")) {
		t.Error("a connection that asked for no tunnel was carried")
	}
	if !strings.Contains(stderr.String(), `nor a request the carrier serves: "GET / HTTP/1.1\r")`) {
		t.Errorf("stderr: %s", stderr)
	}
	control.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := net.Dial("unix", path)
		if err != nil {
			break
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("the tunnel's socket outlived its control")
		}
		time.Sleep(10 * time.Millisecond)
	}
	session.Close()
	c.cmd.Process.Kill()
	c.wait()
}

func dialAndSay(t *testing.T, port, say string) net.Conn {
	conn := dialFrom(t, "127.0.0.1", port)
	fmt.Fprint(conn, say)
	return conn
}
