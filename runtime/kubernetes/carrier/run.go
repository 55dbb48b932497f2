package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime/kubernetes/internal/pipe"
)

// handshake is go-plugin's handshake line: core version, app version,
// network, address, then the protocol and the certificate.
var handshake = regexp.MustCompile(`^\d+\|\d+\|(unix|tcp)\|([^|\r\n]+)`)

// socketWait bounds how long an admitted connection waits for the plugin's
// handshake line: the host dials only after it read the line, so a long wait
// means the plugin is not coming.
const socketWait = time.Minute

// carrier is one run: the listener, the plugin child and its one session.
type carrier struct {
	ln     net.Listener
	admit  map[netip.Addr]bool
	cmd    *exec.Cmd
	stderr io.Writer
	// socket gets the plugin's address once, from its handshake line.
	socket     chan [2]string
	socketOnce sync.Once
	mu         sync.Mutex
	taken      bool // the one session is taken
	// sessionDone is closed when the host's side of the session ends (or
	// it never could start).
	sessionDone chan struct{}
	sessionOnce sync.Once
	// tunnels carry the plugin's connections to the host's broker.
	tunnels *tunnels
	figures *figures
	output  sync.WaitGroup
	exited  chan struct{}
}

func run(argv []string, port, admit string, stdout, stderr io.Writer) int {
	c, code := start(argv, port, admit, stdout, stderr)
	if c == nil {
		return code
	}
	return c.wait()
}

// parseAdmit reads the admitted addresses; IPv4-mapped IPv6 addresses are
// taken as the IPv4 addresses they are.
func parseAdmit(admit string) (map[netip.Addr]bool, error) {
	set := map[netip.Addr]bool{}
	for _, field := range strings.Split(admit, ",") {
		field = strings.TrimSpace(field)
		if field == "" {
			continue
		}
		addr, err := netip.ParseAddr(field)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not an IP address", envAdmit, field)
		}
		set[addr.Unmap()] = true
	}
	if len(set) == 0 {
		return nil, fmt.Errorf("%s names no address: the host's addresses must be given, or no connection could be admitted", envAdmit)
	}
	return set, nil
}

// start listens first, then starts the plugin: the port is open before the
// plugin can print its handshake, so the host never dials a closed port.
// On failure it says why on stderr and returns the exit code.
func start(argv []string, port, admit string, stdout, stderr io.Writer) (*carrier, int) {
	fail := func(code int, format string, args ...any) (*carrier, int) {
		fmt.Fprintf(stderr, "carrier: "+format+"\n", args...)
		return nil, code
	}
	if len(argv) == 0 || argv[0] == "" {
		return fail(2, "no plugin command")
	}
	set, err := parseAdmit(admit)
	if err != nil {
		return fail(2, "%v", err)
	}
	if port == "" {
		return fail(2, "%s is not set", envPort)
	}
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		return fail(1, "listening on port %s: %v", port, err)
	}
	c := &carrier{ln: ln, admit: set, stderr: stderr, socket: make(chan [2]string, 1), exited: make(chan struct{}), sessionDone: make(chan struct{}),
		tunnels: &tunnels{dir: os.Getenv("PLUGIN_UNIX_SOCKET_DIR"), pending: map[string]chan net.Conn{}}, figures: newFigures(stderr)}
	c.cmd = exec.Command(argv[0], argv[1:]...)
	c.cmd.Env = pluginEnv(os.Environ())
	c.cmd.Stderr = stderr
	pipe, err := c.cmd.StdoutPipe()
	if err != nil {
		ln.Close()
		return fail(1, "%v", err)
	}
	if err := c.cmd.Start(); err != nil {
		ln.Close()
		code := 126
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			code = 127
		}
		return fail(code, "starting the plugin %q: %v", argv[0], err)
	}
	c.output.Add(1)
	go c.passStdout(pipe, stdout)
	go c.forwardSignals()
	go c.accept()
	return c, 0
}

// pluginEnv is the carrier's environment without its own settings.
func pluginEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, envPort+"=") && !strings.HasPrefix(kv, envAdmit+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// passStdout copies the plugin's stdout unchanged, line by line, and takes
// the socket's address from the handshake line.
func (c *carrier) passStdout(pipe io.Reader, stdout io.Writer) {
	defer c.output.Done()
	r := bufio.NewReader(pipe)
	for {
		line, err := r.ReadString('\n')
		if line != "" {
			io.WriteString(stdout, line)
			if m := handshake.FindStringSubmatch(line); m != nil {
				c.socketOnce.Do(func() { c.socket <- [2]string{m[1], m[2]} })
			}
		}
		if err != nil {
			return
		}
	}
}

// forwardSignals passes the signals a container is stopped with to the
// plugin: as PID 1 the carrier would otherwise ignore them, and the plugin
// would never hear of its stop.
func (c *carrier) forwardSignals() {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT)
	for {
		select {
		case s := <-signals:
			c.signal(s)
		case <-c.exited:
			signal.Stop(signals)
			return
		}
	}
}

// signal passes s to the plugin, but SIGTERM only once the host's session
// is over: a pod deleted from outside gets SIGTERM at once, while the host
// may have requests in flight in it. The host sees the deletion, sends the
// requests after it to a new pod and, once those in flight are answered,
// closes this session (go-plugin asks the plugin to exit over it). The
// pod's grace period bounds the wait: SIGKILL ends it.
func (c *carrier) signal(s os.Signal) {
	if s == syscall.SIGTERM {
		c.mu.Lock()
		open := c.taken
		c.mu.Unlock()
		if open {
			select {
			case <-c.sessionDone:
			default:
				fmt.Fprintln(c.stderr, "carrier: SIGTERM with the host's session open: the plugin serves it until the host closes it")
				go func() {
					select {
					case <-c.sessionDone:
						c.cmd.Process.Signal(s)
					case <-c.exited:
					}
				}()
				return
			}
		}
	}
	c.cmd.Process.Signal(s)
}

// accept passes each connection from the host's addresses on to serve;
// every other connection is closed unread.
func (c *carrier) accept() {
	for {
		conn, err := c.ln.Accept()
		if err != nil {
			return
		}
		if peer := remoteAddr(conn); !c.admit[peer] {
			fmt.Fprintf(c.stderr, "carrier: closed a connection from %s (not the host's address)\n", peer)
			conn.Close()
			continue
		}
		go c.serve(conn)
	}
}

// tlsHandshake is the first byte of a TLS connection (a handshake record):
// go-plugin's session opens with one (AutoMTLS), the host's requests to the
// carrier with a line of ASCII.
const tlsHandshake = 0x16

// serve tells an admitted connection by its first byte. The first that
// opens with TLS is the plugin's session, carried to the plugin; any later
// one is closed before it could reach the plugin, whose session is the
// first it is given. The others are requests to the carrier (tunnel.go,
// stats.go): none of them takes the session, so a tunnel meant for an
// earlier pod at this address, or a stats request before the handshake,
// leaves it to the host's session.
func (c *carrier) serve(conn net.Conn) {
	conn.SetReadDeadline(time.Now().Add(tunnelWait))
	var first [1]byte
	if _, err := io.ReadFull(conn, first[:]); err != nil {
		fmt.Fprintf(c.stderr, "carrier: closed a connection from %s that said nothing (%v)\n", remoteAddr(conn), err)
		conn.Close()
		return
	}
	conn.SetReadDeadline(time.Time{})
	if first[0] != tlsHandshake {
		c.serveRequest(conn, first[0])
		return
	}
	c.mu.Lock()
	take := !c.taken
	c.taken = true
	c.mu.Unlock()
	if !take {
		fmt.Fprintf(c.stderr, "carrier: closed a connection from %s (the plugin's one session is taken)\n", remoteAddr(conn))
		conn.Close()
		return
	}
	c.splice(conn, first[:])
}

func remoteAddr(conn net.Conn) netip.Addr {
	if tcp, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
		if addr, ok := netip.AddrFromSlice(tcp.IP); ok {
			return addr.Unmap()
		}
	}
	return netip.Addr{}
}

// splice carries the session to the plugin's socket, both ways, until
// either side closes; read is what was read of it already.
func (c *carrier) splice(conn net.Conn, read []byte) {
	defer c.sessionOnce.Do(func() { close(c.sessionDone) })
	defer conn.Close()
	var socket [2]string
	select {
	case socket = <-c.socket:
	case <-c.exited:
		return
	case <-time.After(socketWait):
		fmt.Fprintf(c.stderr, "carrier: the plugin printed no handshake within %s; closing the host's connection\n", socketWait)
		return
	}
	plugin, err := net.Dial(socket[0], socket[1])
	if err != nil {
		fmt.Fprintf(c.stderr, "carrier: connecting to the plugin at %s: %v\n", socket[1], err)
		return
	}
	if _, err := plugin.Write(read); err != nil {
		plugin.Close()
		return
	}
	// The session is over once the host's side of it ends (the host
	// closed it, or it broke): nothing more can come from the host, whatever
	// the plugin still has to say.
	pipe.Splice(conn, plugin, func() { c.sessionOnce.Do(func() { close(c.sessionDone) }) })
}

// wait waits for the plugin and returns its exit code, 128+N when signal N
// ended it (as a shell says it).
func (c *carrier) wait() int {
	c.output.Wait() // before Wait, which closes the pipe
	err := c.cmd.Wait()
	close(c.exited)
	c.ln.Close()
	return exitCode(c.cmd.ProcessState, err)
}

func exitCode(state *os.ProcessState, err error) int {
	if state == nil {
		fmt.Fprintf(os.Stderr, "carrier: waiting for the plugin: %v\n", err)
		return 1
	}
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return state.ExitCode()
}
