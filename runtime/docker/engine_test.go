package docker

import (
	"context"
	"testing"

	"github.com/docker/docker/api/types"
)

// podmanEngine is a Podman service: it says so in its version.
type podmanEngine struct{ memEngine }

func (e *podmanEngine) ServerVersion(context.Context) (types.Version, error) {
	return types.Version{Components: []types.ComponentVersion{{Name: "Podman Engine"}}}, nil
}

// The engine says what it runs in its own words: a Docker Engine lists its
// runtimes; a Podman service runs only its default, whatever a container
// asks for, and says how to get another.
func TestFactsInTheEnginesWords(t *testing.T) {
	ctx := context.Background()
	docker, err := With(&memEngine{runtimes: []string{"runsc", "runc"}}, "").Facts(ctx)
	if err != nil || docker.OnlyDefault || !docker.Runs("runsc") || docker.Runs("runcc") {
		t.Fatalf("docker: %+v %v", docker, err)
	}
	if got, want := docker.Refusal("runcc"), "the engine at "+Address("")+" has no OCI runtime runcc; it has runc, runsc"; got != want {
		t.Errorf("docker refusal %q, want %q", got, want)
	}
	podman, err := With(&podmanEngine{memEngine{runtimes: []string{"crun", "runc", "runsc"}, defaultRuntime: "runc"}}, "unix:///run/podman/podman.sock").Facts(ctx)
	if err != nil || !podman.OnlyDefault {
		t.Fatalf("podman: %+v %v", podman, err)
	}
	want := "the Podman service at unix:///run/podman/podman.sock runs every container under its default OCI runtime runc, whatever a container " +
		"asks for, and this runtime asks for runsc: name a Podman service whose default runtime is runsc (containers.conf [engine] runtime) as the runtime's engine"
	if podman.Runs("runsc") || !podman.Runs("runc") || podman.Refusal("runsc") != want {
		t.Errorf("podman refusal %q", podman.Refusal("runsc"))
	}
}
