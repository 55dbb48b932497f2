package testimage

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/docker/docker/client"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
	dockerengine "github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime/docker"
)

// Engine is an engine to run the tests' containers on, for one OCI runtime.
type Engine struct {
	// Name says which: "docker/runc", "podman/runsc".
	Name string
	// Podman is set for a Podman service, which runs every container under
	// its default OCI runtime and lays cgroups out as <parent>/libpod-<id>.
	Podman bool
	// OCIRuntime is what the runtime asks for.
	OCIRuntime string
	// Address is the runtime's engine setting ("" for the default Docker
	// Engine).
	Address string
	Client  *client.Client
}

// Engine is the engine the tests' starts run on.
func (e Engine) Engine() runtime.Engine { return dockerengine.With(e.Client, e.Address) }

// Runtime is a runtime on this engine with this OCI runtime.
func (e Engine) Runtime() runtime.Runtime {
	return runtime.Runtime{OCIRuntime: e.OCIRuntime, Engine: e.Address}
}

// The Podman services scripts/start-podman.sh starts, one per OCI runtime.
const (
	EnvPodmanRunc  = "RC_PODMAN_RUNC"
	EnvPodmanRunsc = "RC_PODMAN_RUNSC"
)

// Engines are the Docker Engine under runc and runsc, and the Podman
// services under each, their test images loaded. Without the Podman
// services a test fails under CI=true, and otherwise runs on Docker alone,
// saying how to add them.
func Engines(t vaulttest.T) []Engine {
	t.Helper()
	docker := Docker(t)
	engines := []Engine{
		{Name: "docker/runc", OCIRuntime: "runc", Client: docker},
		{Name: "docker/runsc", OCIRuntime: "runsc", Client: docker},
	}
	for _, p := range []struct{ env, oci string }{{EnvPodmanRunc, "runc"}, {EnvPodmanRunsc, "runsc"}} {
		address := os.Getenv(p.env)
		if address == "" {
			if os.Getenv("CI") == "true" {
				t.Fatalf("$%s is not set, and CI=true: run `make test` (scripts/start-podman.sh starts the Podman services)", p.env)
			}
			t.Logf("no Podman service for %s: run `make test`, or eval $(sudo scripts/start-podman.sh) to test on Podman too", p.oci)
			continue
		}
		engines = append(engines, Engine{Name: "podman/" + p.oci, Podman: true, OCIRuntime: p.oci, Address: address, Client: Podman(t, address)})
	}
	return engines
}

// Podman is a client for the Podman service at address.
func Podman(t vaulttest.T, address string) *client.Client {
	t.Helper()
	c, err := dockerengine.NewClient(address)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx); err != nil {
		c.Close()
		t.Fatalf("the Podman service at %s does not answer (%v): run scripts/start-podman.sh", address, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

var (
	loadMu sync.Mutex
	loaded = map[string]bool{} // podman address + image ID
)

// Load copies the image id from the Docker Engine into the engine (a Podman
// service, a private Docker Engine), once per process: docker save and
// load, which keeps the image ID and its names. Nothing to do on the
// Docker Engine itself.
func (e Engine) Load(t vaulttest.T, docker *client.Client, id string) {
	t.Helper()
	if e.Address == "" {
		return
	}
	loadMu.Lock()
	defer loadMu.Unlock()
	if loaded[e.Address+id] {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	info, err := docker.ImageInspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	saved, err := docker.ImageSave(ctx, info.RepoTags)
	if err != nil {
		t.Fatalf("saving %v: %v", info.RepoTags, err)
	}
	defer saved.Close()
	resp, err := e.Client.ImageLoad(ctx, saved)
	if err != nil {
		t.Fatalf("loading %v into %s: %v", info.RepoTags, e.Name, err)
	}
	// The load is done when its answer has been read: dockerd streams it.
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("loading %v into %s: %v", info.RepoTags, e.Name, err)
	}
	if got, err := e.Client.ImageInspect(ctx, id); err != nil || got.ID != id {
		t.Fatalf("after the load, %s has %v (%v), not %s", e.Name, got.ID, err, id)
	}
	loaded[e.Address+id] = true
}

// DockerArgs are the docker CLI's arguments to run a command on this
// engine.
func (e Engine) DockerArgs(args ...string) []string {
	if e.Address == "" {
		return args
	}
	return append([]string{"-H", e.Address}, args...)
}

// CgroupDir is the container's cgroup directory under parent, as the
// engine lays it out.
func (e Engine) CgroupDir(parent, id string) string {
	if e.Podman {
		return fmt.Sprintf("%s/libpod-%s", parent, id)
	}
	return parent + "/" + id
}
