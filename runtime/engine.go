package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Engine is the part of the Docker Engine API that running a plugin
// container takes. *client.Client implements it, for the Docker Engine and
// for any service that speaks its API; tests use an in-memory one to check
// the runner's failure reports and cleanup without an engine.
type Engine interface {
	ImageList(ctx context.Context, options image.ListOptions) ([]image.Summary, error)
	ImageInspect(ctx context.Context, imageID string, inspectOpts ...client.ImageInspectOption) (image.InspectResponse, error)
	ImagePull(ctx context.Context, refStr string, options image.PullOptions) (io.ReadCloser, error)
	ImageRemove(ctx context.Context, imageID string, options image.RemoveOptions) ([]image.DeleteResponse, error)
	ContainerCreate(ctx context.Context, config *container.Config, hostConfig *container.HostConfig,
		networkingConfig *network.NetworkingConfig, platform *ocispec.Platform, name string) (container.CreateResponse, error)
	ContainerAttach(ctx context.Context, id string, options container.AttachOptions) (types.HijackedResponse, error)
	ContainerWait(ctx context.Context, id string, condition container.WaitCondition) (<-chan container.WaitResponse, <-chan error)
	ContainerStart(ctx context.Context, id string, options container.StartOptions) error
	ContainerStop(ctx context.Context, id string, options container.StopOptions) error
	ContainerRemove(ctx context.Context, id string, options container.RemoveOptions) error
	Info(ctx context.Context) (system.Info, error)
	ServerVersion(ctx context.Context) (types.Version, error)
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
}

var _ Engine = (*client.Client)(nil)

// NewDockerClient connects to the engine at address (a unix:// socket
// speaking the Docker Engine API), or when address is empty to the Docker
// Engine the environment names (DOCKER_HOST, or the default socket),
// negotiating the API version so an older engine (Docker 20.10 and Podman
// 4 speak 1.41) is understood.
func NewDockerClient(address string) (*client.Client, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if address != "" {
		opts = append(opts, client.WithHost(address))
	}
	return client.NewClientWithOpts(opts...)
}

// EngineAddress is where the engine of a runtime whose engine setting is
// address is reached, for messages.
func EngineAddress(address string) string {
	if address != "" {
		return address
	}
	if env := os.Getenv(client.EnvOverrideHost); env != "" {
		return env
	}
	return client.DefaultDockerHost
}

// Engines are clients by engine address, each made on first use (a mount
// that never runs a plugin never connects) and kept: a client holds a pool
// of connections.
type Engines struct {
	// Dial makes a client; nil means NewDockerClient. Unit tests set it.
	Dial    func(address string) (Engine, error)
	mu      sync.Mutex
	clients map[string]Engine
	facts   map[string]factsEntry
}

// FactsTTL is how long an engine's answer about its OCI runtimes is taken
// as still true. Asking costs a Docker Engine 10 to 80 ms (its info call),
// which every runtime write would otherwise pay; engines change their
// runtimes rarely, and a start checks again.
const FactsTTL = 10 * time.Second

type factsEntry struct {
	facts EngineFacts
	err   error
	at    time.Time
}

// Facts is what the engine at address says of its OCI runtimes, asked at
// most once per FactsTTL. Silence is kept too: a write must not wait on a
// dead or hanging socket each time.
func (e *Engines) Facts(ctx context.Context, address string) (EngineFacts, error) {
	e.mu.Lock()
	cached, ok := e.facts[address]
	e.mu.Unlock()
	if ok && time.Since(cached.at) < FactsTTL {
		return cached.facts, cached.err
	}
	return e.FreshFacts(ctx, address)
}

// FreshFacts asks the engine at address now, and keeps the answer for Facts.
func (e *Engines) FreshFacts(ctx context.Context, address string) (EngineFacts, error) {
	engine, err := e.Get(address)
	var facts EngineFacts
	if err == nil {
		facts, err = AskEngine(ctx, engine, address)
	}
	e.mu.Lock()
	if e.facts == nil {
		e.facts = map[string]factsEntry{}
	}
	e.facts[address] = factsEntry{facts, err, time.Now()}
	e.mu.Unlock()
	return facts, err
}

// Get is the client for address ("" for the environment's Docker Engine).
func (e *Engines) Get(address string) (Engine, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.clients[address]; ok {
		return c, nil
	}
	dial := e.Dial
	if dial == nil {
		dial = func(address string) (Engine, error) { return NewDockerClient(address) }
	}
	c, err := dial(address)
	if err != nil {
		return nil, fmt.Errorf("connecting to the engine at %s: %w", EngineAddress(address), err)
	}
	if e.clients == nil {
		e.clients = map[string]Engine{}
	}
	e.clients[address] = c
	return c, nil
}

// Close closes every client.
func (e *Engines) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for address, c := range e.clients {
		if closer, ok := c.(interface{ Close() error }); ok {
			closer.Close()
		}
		delete(e.clients, address)
	}
}

// IsEngineUnreachable reports whether err is a call's failure to reach the
// engine at address (as a runtime's engine setting names it; empty for the
// default) at all: nothing listens on its socket, or the connection was
// refused, rather than an answer of the engine's. The Docker client says
// so in two ways: its own connection error for ordinary calls, and a dial
// error wrapped for hijacked ones (attach). A dial of another address (the
// plugin's own socket, at its handshake) is not the engine's.
func IsEngineUnreachable(err error, address string) bool {
	if client.IsErrConnectionFailed(err) {
		return true
	}
	var opErr *net.OpError
	if !errors.As(err, &opErr) || opErr.Op != "dial" || opErr.Addr == nil {
		return false
	}
	engine := EngineAddress(address)
	_, socket, _ := strings.Cut(engine, "://")
	return opErr.Addr.String() == socket || strings.HasSuffix(engine, "://"+opErr.Addr.String())
}
