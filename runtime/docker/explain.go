package docker

import (
	"context"
	"fmt"
	"strings"

	"github.com/docker/docker/errdefs"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

func (r *instance) explainCreateError(ctx context.Context, err error) error {
	msg := err.Error()
	if strings.Contains(strings.ToLower(msg), "unknown runtime") {
		known := "unknown"
		if facts, factsErr := r.engine.Facts(ctx); factsErr == nil {
			known = strings.Join(facts.Runtimes, ", ")
		}
		return fmt.Errorf("%w: the Docker Engine has no OCI runtime %q (it has: %s); register it in /etc/docker/daemon.json or change the plugin runtime's oci_runtime",
			runtime.ErrUnknownOCIRuntime, r.run.HostConfig.Runtime, known)
	}
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("%w: %s (its pull_policy is never: build or load it there, or register a pull_policy of missing)", runtime.ErrImageMissing, msg)
	}
	if errdefs.IsInvalidParameter(err) {
		// For example "Range of CPUs is from 0.01 to 2.00, as there are only
		// 2 CPUs available": the runtime asks for more than this host has.
		return fmt.Errorf("%w: %s", runtime.ErrStartRefused, msg)
	}
	return fmt.Errorf("creating the plugin container: %w", err)
}

func (r *instance) explainStartError(ctx context.Context, err error) error {
	msg := err.Error()
	if strings.Contains(msg, "unknown or invalid runtime name") || strings.Contains(strings.ToLower(msg), "unknown runtime") {
		return fmt.Errorf("%w: %s", runtime.ErrUnknownOCIRuntime, msg)
	}
	// Docker says "OCI runtime create/start failed"; Podman relays the OCI
	// runtime's command that failed ("`runsc start <id>` failed: exit status").
	podmanRuntimeFailed := strings.Contains(msg, " start "+r.id+"` failed")
	if strings.Contains(msg, "OCI runtime create failed") || strings.Contains(msg, "OCI runtime start failed") || podmanRuntimeFailed ||
		errdefs.IsInvalidParameter(err) {
		// The OCI runtime's own reason: an executable that is not in the
		// image, a cgroup it cannot make, a limit the kernel refuses.
		return fmt.Errorf("%w (%s): %s", runtime.ErrStartRefused, r.what(), msg)
	}
	return fmt.Errorf("starting the plugin container (image %s, OCI runtime %s): %w", r.run.Config.Image, r.run.HostConfig.Runtime, err)
}

// what names what the engine was asked to run.
func (r *instance) what() string { return r.spec.What() }
