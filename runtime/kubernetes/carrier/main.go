// Command carrier carries the host's one connection into a plugin pod.
//
// On Linux a go-plugin server listens only on a Unix socket in
// PLUGIN_UNIX_SOCKET_DIR, which nothing outside the pod can reach. The
// carrier runs as the plugin container's PID 1: it listens on a pod TCP port
// first, then starts the plugin as its child, passes the plugin's output
// through unchanged (the handshake line reaches the host through the pod's
// logs) and splices the first connection from an admitted address that
// opens with TLS to the plugin's socket (the host's other connections ask
// for tunnels, tunnel.go, and the container's figures, stats.go). The
// plugin takes the first connection that reaches its socket as its only
// session, so nothing else ever reaches it: a probe or another pod is
// closed unread. TLS stays end to end (go-plugin's AutoMTLS):
// the carrier only moves bytes. It exits with the plugin's exit code
// (128+N when a signal N ended it), which is the container's.
//
//	carrier install DEST          copy this program to DEST (the init container)
//	carrier run PLUGIN [ARG...]   carry a connection to PLUGIN (the plugin container)
//
// run reads RC_CARRIER_PORT (the TCP port) and RC_CARRIER_ADMIT (the host's
// addresses, comma-separated); neither reaches the plugin.
package main

import (
	"fmt"
	"io"
	"os"
)

const (
	envPort  = "RC_CARRIER_PORT"
	envAdmit = "RC_CARRIER_ADMIT"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: carrier install DEST | carrier run PLUGIN [ARG...]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "install":
		if err := install(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "carrier:", err)
			os.Exit(1)
		}
	case "run":
		os.Exit(run(os.Args[2:], os.Getenv(envPort), os.Getenv(envAdmit), os.Stdout, os.Stderr))
	default:
		fmt.Fprintf(os.Stderr, "carrier: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

// install copies this program to dest, executable: the plugin image need not
// hold anything but the plugin.
func install(dest string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	in, err := os.Open(self)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dest, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
