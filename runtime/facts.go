package runtime

import (
	"context"
	"fmt"
	"sort"
	"strings"
)

// EngineFacts are what an engine says of the OCI runtimes it runs
// containers with.
type EngineFacts struct {
	Address string
	// Podman is set for a Podman service: its Docker-compatible API
	// ignores the OCI runtime a container asks for and runs every one under
	// the service's default (Podman 4.3), accepting any name silently.
	Podman         bool
	Runtimes       []string // sorted
	DefaultRuntime string
}

// AskEngine asks the engine at address (as a runtime names it) for its facts.
func AskEngine(ctx context.Context, engine Engine, address string) (EngineFacts, error) {
	facts := EngineFacts{Address: EngineAddress(address)}
	info, err := engine.Info(ctx)
	if err != nil {
		return facts, fmt.Errorf("the engine at %s could not be reached: %w", facts.Address, err)
	}
	for name := range info.Runtimes {
		facts.Runtimes = append(facts.Runtimes, name)
	}
	sort.Strings(facts.Runtimes)
	facts.DefaultRuntime = info.DefaultRuntime
	facts.Podman = isPodman(ctx, engine)
	return facts, nil
}

// isPodman reports whether the engine is a Podman service, by its version
// (cheap: the info call costs a Docker Engine 10 to 80 ms).
func isPodman(ctx context.Context, engine Engine) bool {
	version, err := engine.ServerVersion(ctx)
	if err != nil {
		return false
	}
	for _, c := range version.Components {
		if strings.Contains(c.Name, "Podman") {
			return true
		}
	}
	return false
}

// Runs reports whether a container that asks for the OCI runtime oci is
// run under it.
func (f EngineFacts) Runs(oci string) bool {
	if f.Podman {
		return oci == f.DefaultRuntime
	}
	for _, name := range f.Runtimes {
		if name == oci {
			return true
		}
	}
	return false
}

// Refusal says why a container asking for oci would not run under it.
func (f EngineFacts) Refusal(oci string) string {
	if f.Podman {
		return fmt.Sprintf("the Podman service at %s runs every container under its default OCI runtime %s, whatever a "+
			"container asks for, and this runtime asks for %s: name a Podman service whose default runtime is %s "+
			"(containers.conf [engine] runtime) as the runtime's engine", f.Address, f.DefaultRuntime, oci, oci)
	}
	return fmt.Sprintf("the engine at %s has no OCI runtime %s; it has %s", f.Address, oci, strings.Join(f.Runtimes, ", "))
}
