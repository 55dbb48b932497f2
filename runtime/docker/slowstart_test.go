package docker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/testimage"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// A plugin slow to handshake, on the real engine under each runtime: at the
// handshake limit its start fails naming that limit, never its memory limit
// or the exit our own stop caused; and a start whose context ends first
// (the host closing: a seal) is abandoned at once, its container removed.
func TestSlowHandshakeOnTheRealEngine(t *testing.T) {
	docker := testimage.Docker(t)
	const image = "rc-probe-plugin-runtime-test" // the acceptance tests build rc-probe-plugin, meanwhile
	id := testimage.BuildProbeNamed(t, docker, image)
	slow := runtime.Plugin{Name: "probe", Type: "secret", Version: testimage.ProbeVersion, Image: image, SHA256: id,
		Env: []string{"PROBE_HANDSHAKE_DELAY=1h"}}
	for _, e := range testimage.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			e.Load(t, docker, id)
			rt := e.Runtime()
			rt.MemoryBytes = 64 << 20

			o := checkOptions()
			o.SocketRoot = vaulttest.ShortTempDir(t)
			// Long enough for the engine's own start under load (Podman
			// under runsc is the slowest): the limit must fall on the
			// handshake.
			o.StartTimeout = 6 * time.Second
			_, err := runtime.Start(context.Background(), e.Engine(), slow, rt, o)
			if !errors.Is(err, runtime.ErrHandshakeTimeout) || !strings.Contains(err.Error(), "no handshake within 6s (the handshake limit)") ||
				strings.Contains(err.Error(), "exited") || strings.Contains(err.Error(), "was using") {
				t.Fatalf("a plugin slow to handshake: %v", err)
			}
			t.Logf("at the handshake limit: %v", err)
			testimage.AssertNoContainers(t, e.Client)

			o.StartTimeout = time.Hour
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(2*time.Second, cancel) // the host closes while the plugin has not answered
			_, err = runtime.Start(ctx, e.Engine(), slow, rt, o)
			if !errors.Is(err, runtime.ErrStartAbandoned) || !strings.Contains(err.Error(), "the host is closing") {
				t.Fatalf("a start whose context ended: %v", err)
			}
			vaulttest.Eventually(t, 30*time.Second, "the abandoned start's container removed", func() error {
				return testimage.ContainersLeft(e.Client)
			})
		})
	}
}
