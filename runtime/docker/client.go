// Package docker is the engine of runtime for the Docker Engine API: the
// Docker Engine, and a Podman service, which speaks it. It is the only
// package that imports the Docker SDK; what the API cannot honour of a
// runtime it refuses itself.
package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// API is the part of the Docker Engine API that running plugin containers
// takes. *client.Client implements it, for the Docker Engine and for any
// service that speaks its API; unit tests use an in-memory one to check the
// container's failure reports and cleanup without an engine.
type API interface {
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
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	ContainerStats(ctx context.Context, id string, stream bool) (container.StatsResponseReader, error)
	Events(ctx context.Context, options events.ListOptions) (<-chan events.Message, <-chan error)
	Info(ctx context.Context) (system.Info, error)
	ServerVersion(ctx context.Context) (types.Version, error)
	Close() error
}

var _ API = (*client.Client)(nil)

// NewClient connects to the engine at address (a unix:// socket speaking
// the Docker Engine API), or when address is empty to the Docker Engine the
// environment names (DOCKER_HOST, or the default socket), negotiating the
// API version so an older engine (Docker 20.10 and Podman 4 speak 1.41) is
// understood.
func NewClient(address string) (*client.Client, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if address != "" {
		opts = append(opts, client.WithHost(address))
	}
	return client.NewClientWithOpts(opts...)
}

// Address is where the engine of a runtime whose engine setting is address
// is reached, for messages.
func Address(address string) string {
	if address != "" {
		return address
	}
	if env := os.Getenv(client.EnvOverrideHost); env != "" {
		return env
	}
	return client.DefaultDockerHost
}

// unreachable reports whether err is a call's failure to reach the engine
// at address (as a runtime's engine setting names it; empty for the
// default) at all: nothing listens on its socket, or the connection was
// refused, rather than an answer of the engine's. The Docker client says
// so in two ways: its own connection error for ordinary calls, and a dial
// error wrapped for hijacked ones (attach). A dial of another address (the
// plugin's own socket, at its handshake) is not the engine's.
func unreachable(err error, address string) bool {
	if client.IsErrConnectionFailed(err) {
		return true
	}
	var opErr *net.OpError
	if !errors.As(err, &opErr) || opErr.Op != "dial" || opErr.Addr == nil {
		return false
	}
	engine := Address(address)
	_, socket, _ := strings.Cut(engine, "://")
	return opErr.Addr.String() == socket || strings.HasSuffix(engine, "://"+opErr.Addr.String())
}

// MaxAddressLength bounds an engine address.
const MaxAddressLength = 255

// CheckAddress says why address, a runtime's engine setting, names no
// engine speaking the Docker Engine API.
func CheckAddress(address string) error {
	path, ok := strings.CutPrefix(address, "unix://")
	if !ok || !strings.HasPrefix(path, "/") || len(address) > MaxAddressLength || strings.ContainsAny(path, "\x00\n") {
		return fmt.Errorf("engine %q is not an engine address: unix:// and the absolute path of a socket speaking the Docker "+
			"Engine API (e.g. unix:///run/podman/podman.sock), at most %d characters",
			address, MaxAddressLength)
	}
	return nil
}
