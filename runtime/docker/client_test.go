package docker

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
	c, err := NewClient(address)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	_, versionErr := c.ServerVersion(ctx)
	_, attachErr := c.ContainerAttach(ctx, "x", container.AttachOptions{Stream: true})
	for what, err := range map[string]error{"version": versionErr, "attach": attachErr,
		"wrapped": fmt.Errorf("attaching to container x: %w", attachErr)} {
		if err == nil || !unreachable(err, address) {
			t.Errorf("%s: %v is not an unreachable engine", what, err)
		}
	}
	if unreachable(errors.New("Error response from daemon: No such container: x"), address) {
		t.Error("an engine's answer is an unreachable engine")
	}
	// The plugin's own socket refusing its handshake is not the engine.
	_, dialErr := net.Dial("unix", filepath.Join(t.TempDir(), "plugin.sock"))
	if dialErr == nil || unreachable(fmt.Errorf("plugin handshake: %w", dialErr), address) {
		t.Errorf("a dial of the plugin's socket (%v) is an unreachable engine", dialErr)
	}
}
