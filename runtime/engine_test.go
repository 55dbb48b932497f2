package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"

	"github.com/docker/docker/api/types/container"
)

// A call to a socket nothing listens on is an unreachable engine, however
// the client reports it: ordinary calls and hijacked ones (attach) differ.
func TestIsEngineUnreachable(t *testing.T) {
	address := "unix://" + filepath.Join(t.TempDir(), "none.sock")
	c, err := NewDockerClient(address)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	_, versionErr := c.ServerVersion(ctx)
	_, attachErr := c.ContainerAttach(ctx, "x", container.AttachOptions{Stream: true})
	for what, err := range map[string]error{"version": versionErr, "attach": attachErr,
		"wrapped": fmt.Errorf("attaching to container x: %w", attachErr)} {
		if err == nil || !IsEngineUnreachable(err, address) {
			t.Errorf("%s: %v is not an unreachable engine", what, err)
		}
	}
	if IsEngineUnreachable(errors.New("Error response from daemon: No such container: x"), address) {
		t.Error("an engine's answer is an unreachable engine")
	}
	// The plugin's own socket refusing its handshake is not the engine.
	_, dialErr := net.Dial("unix", filepath.Join(t.TempDir(), "plugin.sock"))
	if dialErr == nil || IsEngineUnreachable(fmt.Errorf("plugin handshake: %w", dialErr), address) {
		t.Errorf("a dial of the plugin's socket (%v) is an unreachable engine", dialErr)
	}
}

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
