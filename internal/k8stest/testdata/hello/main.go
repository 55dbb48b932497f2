// Command hello is the test pod of internal/k8stest: it prints one line
// naming the kernel it sees (gVisor's own under runsc) and exits.
package main

import (
	"fmt"
	"syscall"
)

func main() {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		panic(err)
	}
	fmt.Printf("hello from a pod, kernel %s\n", chars(u.Release[:]))
}

func chars(b []int8) string {
	s := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}
