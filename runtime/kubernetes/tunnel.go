package kubernetes

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime/kubernetes/internal/pipe"
)

// tunnelOpenWait bounds opening a tunnel, dial and answer: the plugin
// waits about 5 s for the address, and the carrier answers at once.
// tunnelWait bounds a connection of a tunnel's.
const (
	tunnelOpenWait = 3 * time.Second
	tunnelWait     = 10 * time.Second
)

// tunnelCarries bounds the connections one tunnel carries at once: go-plugin
// dials a brokered service once; more ACCEPTs than that are not the
// plugin's broker's doing.
const tunnelCarries = 4

// tunnelSweep is how often a tunnel looks whether the host's socket it
// carries is still there: go-plugin removes it when the backend it serves
// is cleaned up (a mount unmounted or reloaded), and the tunnel goes with
// it.
var tunnelSweep = 10 * time.Second

// carrierPort is the port the host dials the carriers on (CarrierPort; a
// test's fake carrier listens on another).
var carrierPort = CarrierPort

// HostToPlugin carries a socket of the host's broker (go-plugin listens on
// one for each service it brokers to the plugin: Vault's storage, its
// system view) into the pod, and names the socket the plugin is to dial
// there. The pod reaches nothing of the host's, so the host makes every
// connection (the carrier's tunnels, carrier/tunnel.go): a control
// connection that opens a socket in the plugin's socket directory, and one
// more connection for each time the plugin dials it. This keeps each
// brokered service on a connection of its own, as on Docker, rather than
// multiplexed over the session (yamux), whose framing and loops cost a third
// of the throughput. go-plugin only logs the error of a failed call (the
// plugin then says it timed out waiting for connection info), so it is
// logged here too, with the pod.
func (c *container) HostToPlugin(network, addr string) (string, string, error) {
	network, path, err := c.openTunnel(network, addr)
	if err != nil {
		c.log().Error("carrying a socket of the host's broker into the plugin pod", "pod", c.name, "socket", addr, "error", err)
	}
	return network, path, err
}

func (c *container) openTunnel(network, addr string) (string, string, error) {
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
	deadline := time.Now().Add(tunnelOpenWait)
	control, err := c.dialCarrier(context.Background(), ip, "TUNNEL LISTEN "+name, deadline)
	if err != nil {
		return "", "", err
	}
	control.SetReadDeadline(deadline)
	r := bufio.NewReaderSize(control, 512)
	line, err := r.ReadSlice('\n')
	path, ok := strings.CutPrefix(strings.TrimSuffix(string(line), "\n"), "OK ")
	if err != nil || !ok || !strings.HasPrefix(path, runtime.PluginSocketDir+"/") {
		control.Close()
		return "", "", fmt.Errorf("the carrier of the pod %s/%s opened no tunnel: it answered %q (%v)", c.e.namespace, c.name, line, err)
	}
	control.SetReadDeadline(time.Time{})
	if !c.keepTunnel(control) {
		control.Close()
		return "", "", fmt.Errorf("the pod %s/%s is stopping", c.e.namespace, c.name)
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		defer control.Close()
		carries := make(chan struct{}, tunnelCarries)
		for {
			line, err := r.ReadSlice('\n')
			if err != nil {
				return
			}
			if string(line) != "ACCEPT\n" {
				continue
			}
			select {
			case carries <- struct{}{}:
				go func() {
					defer func() { <-carries }()
					c.carry(ip, name, network, addr)
				}()
			default:
				c.log().Warn("a tunnel of the plugin pod's was asked to carry more connections than the plugin's broker makes", "pod", c.name)
			}
		}
	}()
	go func() {
		tick := time.NewTicker(tunnelSweep)
		defer tick.Stop()
		for {
			select {
			case <-closed:
				return
			case <-tick.C:
				if _, err := os.Stat(addr); errors.Is(err, fs.ErrNotExist) {
					control.Close() // its socket is gone: so is the tunnel, in the pod too
					return
				}
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
	pod, err := c.dialCarrier(context.Background(), ip, "TUNNEL DATA "+name, time.Now().Add(tunnelWait))
	if err != nil {
		host.Close()
		c.log().Debug("connecting a tunnel", "pod", c.name, "error", err)
		return
	}
	pipe.Splice(pod, host, func() {})
}

// dialCarrier connects to the pod's carrier by deadline (or ctx's end) and
// sends it the request line (carrier/tunnel.go's requestLine).
func (c *container) dialCarrier(ctx context.Context, ip, request string, deadline time.Time) (net.Conn, error) {
	d := net.Dialer{Deadline: deadline}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip, strconv.Itoa(carrierPort)))
	if err != nil {
		return nil, fmt.Errorf("connecting to the carrier of the pod %s/%s: %w", c.e.namespace, c.name, err)
	}
	if _, err := fmt.Fprintf(conn, "%s\n", request); err != nil {
		conn.Close()
		return nil, fmt.Errorf("asking the carrier of the pod %s/%s for %s: %w", c.e.namespace, c.name, strings.Fields(request)[0], err)
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
