package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime/kubernetes/internal/pipe"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime/kubernetes/internal/wire"
)

// Tunnels carry the plugin's connections to the host's broker: go-plugin's
// broker has the plugin dial a socket of the host's for each brokered
// service (Vault's storage, its system view), and a pod can reach no socket
// of the host's, nor (without network) any address outside it. So every
// connection is made by the host, after the session:
//
//	host -> carrier   TUNNEL LISTEN name   the carrier listens on a socket in
//	carrier -> host   OK path              the plugin's socket directory; the
//	                                       host tells the plugin that path
//	carrier -> host   ACCEPT               the plugin connected to it
//	host -> carrier   TUNNEL DATA name     a new connection, which the carrier
//	                                       splices to the plugin's
//
// The LISTEN connection stays open as the tunnel's control: when it ends,
// so does the listener. Only connections from the host's addresses reach
// this, once the session is taken; go-plugin's mTLS covers what they carry.

// tunnelWait bounds how long a tunnel connection may take to say what it
// is, and a plugin's connection to a tunnel waits for the host's.
const tunnelWait = 10 * time.Second

// tunnels are the tunnels the host opened, by name: each has the plugin's
// connections waiting for the host's.
type tunnels struct {
	dir     string
	mu      sync.Mutex
	pending map[string]chan net.Conn
}

// requestLine reads a request to the carrier; names are the host's, kept
// short.
var requestLine = regexp.MustCompile(`^(?:TUNNEL (LISTEN|DATA) ([a-z0-9]{1,32})|(` + regexp.QuoteMeta(wire.StatsRequest) + `))\n$`)

// serveRequest reads what an admitted connection that is no session asks
// for (first is its first byte), and serves it; anything else is closed
// unread. A tunnel needs the session: before it, a tunnel can only be one
// meant for an earlier pod at this address.
func (c *carrier) serveRequest(conn net.Conn, first byte) {
	conn.SetReadDeadline(time.Now().Add(tunnelWait))
	line, err := readLine(conn, first)
	m := requestLine.FindStringSubmatch(line)
	c.mu.Lock()
	taken := c.taken
	c.mu.Unlock()
	switch {
	case err != nil || m == nil:
		fmt.Fprintf(c.stderr, "carrier: closed a connection from %s (it opened with neither TLS, as go-plugin's session does with AutoMTLS, nor a request the carrier serves: %q)\n",
			remoteAddr(conn), strings.TrimSuffix(line, "\n"))
		conn.Close()
		return
	case m[3] == "" && !taken:
		fmt.Fprintf(c.stderr, "carrier: closed a connection from %s (a tunnel before the plugin's session)\n", remoteAddr(conn))
		conn.Close()
		return
	}
	conn.SetReadDeadline(time.Time{})
	switch {
	case m[3] != "":
		c.stats(conn)
	case m[1] == "LISTEN":
		c.tunnels.listen(conn, m[2], c.stderr)
	default:
		c.tunnels.data(conn, m[2], c.stderr)
	}
}

// listen makes the tunnel's socket, answers its path and passes the
// plugin's connections to it on to the host, until control ends.
func (t *tunnels) listen(control net.Conn, name string, stderr io.Writer) {
	defer control.Close()
	path := filepath.Join(t.dir, "tunnel-"+name)
	t.mu.Lock()
	if t.pending[name] != nil {
		t.mu.Unlock()
		fmt.Fprintf(control, "ERR the tunnel %s is open already\n", name)
		return
	}
	waiting := make(chan net.Conn)
	t.pending[name] = waiting
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.pending, name)
		t.mu.Unlock()
	}()
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		fmt.Fprintf(control, "ERR %v\n", strings.ReplaceAll(err.Error(), "\n", " "))
		return
	}
	defer ln.Close()
	if _, err := fmt.Fprintf(control, "OK %s\n", path); err != nil {
		return
	}
	go func() {
		// The control's end (the host closed the tunnel, or is gone) ends
		// the listener.
		buf := make([]byte, 1)
		control.Read(buf)
		ln.Close()
	}()
	for {
		plugin, err := ln.Accept()
		if err != nil {
			return
		}
		if _, err := fmt.Fprint(control, "ACCEPT\n"); err != nil {
			plugin.Close()
			return
		}
		go func() {
			select {
			case waiting <- plugin:
			case <-time.After(tunnelWait):
				fmt.Fprintf(stderr, "carrier: the host did not connect the tunnel %s within %s\n", name, tunnelWait)
				plugin.Close()
			}
		}()
	}
}

// data splices a host's connection to the plugin's connection waiting on
// the tunnel.
func (t *tunnels) data(conn net.Conn, name string, stderr io.Writer) {
	t.mu.Lock()
	waiting := t.pending[name]
	t.mu.Unlock()
	if waiting == nil {
		fmt.Fprintf(stderr, "carrier: closed a connection for the tunnel %s, which is not open\n", name)
		conn.Close()
		return
	}
	select {
	case plugin := <-waiting:
		pipe.Splice(conn, plugin, func() {})
	case <-time.After(tunnelWait):
		fmt.Fprintf(stderr, "carrier: no connection of the plugin's waits on the tunnel %s\n", name)
		conn.Close()
	}
}

// readLine reads one short line, which starts with first, a byte at a time:
// what follows it is the tunnel's, and must not be read ahead into a buffer.
func readLine(conn net.Conn, first byte) (string, error) {
	line := []byte{first}
	if first == '\n' {
		return string(line), nil
	}
	b := make([]byte, 1)
	for len(line) < 64 {
		if _, err := conn.Read(b); err != nil {
			return string(line), err
		}
		line = append(line, b[0])
		if b[0] == '\n' {
			return string(line), nil
		}
	}
	return string(line), fmt.Errorf("a line longer than %d bytes", len(line))
}
