package kubernetes

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime/kubernetes/internal/pipe"
)

// tunnelWait bounds each step of opening a tunnel: the carrier answers at
// once.
const tunnelWait = 10 * time.Second

// HostToPlugin carries a socket of the host's broker (go-plugin listens on
// one for each service it brokers to the plugin: Vault's storage, its
// system view) into the pod, and names the socket the plugin is to dial
// there. The pod reaches nothing of the host's, so the host makes every
// connection (the carrier's tunnels, carrier/tunnel.go): a control
// connection that opens a socket in the plugin's socket directory, and one
// more connection for each time the plugin dials it. This keeps each
// brokered service on a connection of its own, as on Docker, rather than
// multiplexed over the session (yamux), whose framing and loops cost a third
// of the throughput.
func (c *container) HostToPlugin(network, addr string) (string, string, error) {
	if network != "unix" {
		return "", "", fmt.Errorf("the host's broker listens on %s %s, and only a Unix socket is carried into a pod", network, addr)
	}
	c.mu.Lock()
	ip := c.podIP
	c.mu.Unlock()
	if ip == "" {
		return "", "", fmt.Errorf("the pod %s/%s has no IP", c.e.namespace, c.name)
	}
	var id [8]byte
	rand.Read(id[:])
	name := hex.EncodeToString(id[:])
	control, err := c.dialCarrier(ip, "LISTEN", name)
	if err != nil {
		return "", "", err
	}
	control.SetReadDeadline(time.Now().Add(tunnelWait))
	r := bufio.NewReader(control)
	line, err := r.ReadString('\n')
	path, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "OK ")
	if err != nil || !ok || !strings.HasPrefix(path, runtime.PluginSocketDir+"/") {
		control.Close()
		return "", "", fmt.Errorf("the carrier of the pod %s/%s opened no tunnel to the host's socket %s: %q %v", c.e.namespace, c.name, addr, line, err)
	}
	control.SetReadDeadline(time.Time{})
	if !c.keepTunnel(control) {
		control.Close()
		return "", "", fmt.Errorf("the pod %s/%s is stopping", c.e.namespace, c.name)
	}
	go func() {
		defer control.Close()
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if line == "ACCEPT\n" {
				go c.carry(ip, name, network, addr)
			}
		}
	}()
	return "unix", path, nil
}

// carry joins a connection of the plugin's, waiting on tunnel name, to the
// host's socket at addr.
func (c *container) carry(ip, name, network, addr string) {
	host, err := net.DialTimeout(network, addr, tunnelWait)
	if err != nil {
		c.log().Debug("the host's broker socket is gone", "pod", c.name, "socket", addr, "error", err)
		return
	}
	pod, err := c.dialCarrier(ip, "DATA", name)
	if err != nil {
		host.Close()
		c.log().Debug("connecting a tunnel", "pod", c.name, "error", err)
		return
	}
	pipe.Splice(pod, host, func() {})
}

// dialCarrier connects to the pod's carrier and asks for tunnel name.
func (c *container) dialCarrier(ip, verb, name string) (net.Conn, error) {
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(ip, strconv.Itoa(CarrierPort)), tunnelWait)
	if err != nil {
		return nil, fmt.Errorf("connecting to the carrier of the pod %s/%s: %w", c.e.namespace, c.name, err)
	}
	if _, err := fmt.Fprintf(conn, "TUNNEL %s %s\n", verb, name); err != nil {
		conn.Close()
		return nil, fmt.Errorf("asking the carrier of the pod %s/%s for a tunnel: %w", c.e.namespace, c.name, err)
	}
	return conn, nil
}

// keepTunnel records a tunnel's control connection, closed with the
// container (closeTunnels); false once it is closed.
func (c *container) keepTunnel(control net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tunnelsClosed {
		return false
	}
	c.tunnels = append(c.tunnels, control)
	return true
}

// closeTunnels closes the tunnels' control connections: the carrier closes
// their sockets, and no more connections are carried.
func (c *container) closeTunnels() {
	c.mu.Lock()
	controls := c.tunnels
	c.tunnels, c.tunnelsClosed = nil, true
	c.mu.Unlock()
	for _, control := range controls {
		control.Close()
	}
}
