// Command rc-k8s-pause is the sandbox ("pause") process of the test node's
// pods: it holds the pod's namespaces and waits for a signal. It is built
// here because no image can be pulled from outside on the project's machines.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	// As PID 1 of the pod, reap the orphans that end up as its children.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGCHLD)
	go func() {
		for {
			var ws syscall.WaitStatus
			if _, err := syscall.Wait4(-1, &ws, 0, nil); err != nil {
				signal.Reset(syscall.SIGCHLD)
				return
			}
		}
	}()
	<-sig
}
