package runtime

import (
	"fmt"
	"testing"
)

// A panic's first line is kept however long the goroutine dump after it.
func TestLineTailKeepsThePanic(t *testing.T) {
	tail := newLineTail(3)
	fmt.Fprint(tail, "starting\npanic: probe: asked to panic\n\ngoroutine 7 [running]:\n")
	for i := 0; i < 50; i++ {
		fmt.Fprintf(tail, "main.frame%d()\n\t/src/main.go:%d\n", i, i)
	}
	if got := tail.Panic(); got != "panic: probe: asked to panic" {
		t.Fatalf("panic = %q (tail %q)", got, tail.String())
	}
	quiet := newLineTail(3)
	fmt.Fprint(quiet, "a panic: not at the start\n")
	if quiet.Panic() != "" {
		t.Fatal("a line that mentions a panic is one")
	}
}
