// Command rc-k8s-forward carries TCP connections from a port on the host's
// 127.0.0.1 to an address inside a network namespace, so that a kubeconfig
// naming https://127.0.0.1:PORT works both on the host and inside the test
// node's namespace (where the API server listens on the same port).
//
//	rc-k8s-forward -netns /var/run/netns/NAME -to 127.0.0.1 [-port N]
//
// It listens on the host first (-port 0: any free port), prints the port on
// stdout, then dials every connection from inside the namespace.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

func main() {
	netns := flag.String("netns", "", "network namespace file (/var/run/netns/NAME)")
	to := flag.String("to", "127.0.0.1", "host to dial inside the namespace, on the same port")
	port := flag.Int("port", 0, "port on 127.0.0.1 (0: any free one)")
	flag.Parse()

	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(*port))
	if err != nil {
		log.Fatal(err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	target := net.JoinHostPort(*to, strconv.Itoa(p))

	// One goroutine, locked to a thread that entered the namespace, makes
	// every outgoing socket: a socket belongs to the namespace of the thread
	// that created it. Listening sockets made before stay on the host.
	type dial struct {
		reply chan net.Conn
	}
	dials := make(chan dial)
	ready := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the process
		f, err := os.Open(*netns)
		if err == nil {
			if e := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); e != nil {
				err = fmt.Errorf("setns %s: %v", *netns, e)
			}
			f.Close()
		}
		ready <- err
		for d := range dials {
			c, err := net.Dial("tcp", target)
			if err != nil {
				log.Print(err)
				c = nil
			}
			d.reply <- c
		}
	}()
	if err := <-ready; err != nil {
		log.Fatal(err)
	}
	fmt.Println(p)
	os.Stdout.Sync()

	for {
		in, err := l.Accept()
		if err != nil {
			log.Fatal(err)
		}
		d := dial{reply: make(chan net.Conn)}
		dials <- d
		out := <-d.reply
		if out == nil {
			in.Close()
			continue
		}
		go splice(in.(*net.TCPConn), out.(*net.TCPConn))
	}
}

// splice copies both ways, half-closing each side when its source ends, and
// closes both connections when both directions are done.
func splice(a, b *net.TCPConn) {
	var wg sync.WaitGroup
	wg.Add(2)
	half := func(dst, src *net.TCPConn) {
		defer wg.Done()
		io.Copy(dst, src)
		dst.CloseWrite()
	}
	go half(a, b)
	go half(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}
