// Package pipe joins two connections: the carrier's in the pod, and the
// engine's on the host, where tunnels carry the plugin's connections to the
// host's broker.
package pipe

import (
	"io"
	"net"
)

// Splice carries a to b and back until both directions are done, then
// closes both; aEnded is called when a's side ends (nothing more comes
// from it).
func Splice(a, b net.Conn, aEnded func()) {
	defer a.Close()
	defer b.Close()
	done := make(chan struct{}, 2)
	pass := func(dst, src net.Conn, ended func()) {
		io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		ended()
		done <- struct{}{}
	}
	go pass(b, a, aEnded)
	go pass(a, b, func() {})
	<-done
	<-done
}
