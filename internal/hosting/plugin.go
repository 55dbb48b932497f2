package hosting

import (
	"context"

	"github.com/hashicorp/vault/sdk/logical"
	"google.golang.org/grpc"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// Plugin is a plugin's running container as the host uses it:
// *runtime.Running is one, and the host's unit tests run a fake. The host
// asks nothing else of it, so its whole lifecycle (start, restart, sharing,
// the crash-loop rule, stop) is tested without an engine.
type Plugin interface {
	// Multiplexed reports whether the plugin serves several backends at
	// once, so several mounts may share its container.
	Multiplexed(ctx context.Context) (bool, error)
	// Backend sets up a backend in the plugin for the mount whose
	// multiplexing ID is id.
	Backend(ctx context.Context, id string, conf *logical.BackendConfig) (logical.Backend, error)
	// Conn is the connection to the plugin through backend id, for requests
	// passed through as protocol buffers.
	Conn(id string) grpc.ClientConnInterface
	// Exited reports whether the plugin's process has ended.
	Exited() bool
	// Leaving is closed once its engine is taking the container away (a
	// pod being deleted): it finishes the requests in flight, and new ones
	// go to a new container.
	Leaving() <-chan struct{}
	// Explain turns the error of a call that found the plugin gone into
	// why it is gone (its exit code and last output), when it knows.
	Explain(cause error) error
	// MemoryKilled reports whether the container was killed under its
	// memory limit (after Explain, which waits for its exit).
	MemoryKilled() bool
	// Panicked reports whether the plugin exited from a panic (after
	// Explain).
	Panicked() bool
	// ID is the container's (or pod's) ID, for the mount's status.
	ID() string
	// Exit is how the container ended, once it has (after Explain).
	Exit() (runtime.Exit, bool)
	// Usage is what the container uses now, as its engine says.
	Usage(ctx context.Context) (runtime.Usage, error)
	// OOMKills counts the kernel's OOM kills in the container, and says
	// whether the engine reports them at all.
	OOMKills() (int64, bool)
	// Stop ends the plugin and removes its container; it may be called
	// more than once.
	Stop(ctx context.Context)
}

// StartFunc starts a plugin's container with its runtime and completes the
// handshake; logName names its log. The host calls it under a context of
// its own, never a request's: a client that hangs up must not cancel a
// start that other requests wait for.
type StartFunc func(ctx context.Context, p runtime.Plugin, rt runtime.Runtime, logName string) (Plugin, error)

// Store is what the host keeps in storage, all of it through the catalog,
// which owns every storage key (hosted data views and lease counts
// included).
type Store interface {
	// Mount is the stored hosted mount of that name, nil when there is none.
	Mount(ctx context.Context, name string) (*Mount, error)
	// Mounts are the stored hosted mounts, sorted by name.
	Mounts(ctx context.Context) ([]*Mount, error)
	// ToRun is the registered plugin of that name and its runtime,
	// as they are now.
	ToRun(ctx context.Context, plugin string) (runtime.Plugin, runtime.Runtime, error)
	// Data is the mount's own storage: all the hosted plugin sees.
	Data(uuid string) logical.Storage
	// Leases is the stored count of the mount's outstanding leases.
	Leases(ctx context.Context, uuid string) (int, error)
	// PutLeases stores it.
	PutLeases(ctx context.Context, uuid string, n int) error
	// PutPaths stores the special paths the mount's plugin declares, when
	// the mount stored under name is still the one of uuid.
	PutPaths(ctx context.Context, name, uuid string, paths Paths) error
	// Published are the special paths Vault last read for each hosted
	// mount, by name, as PutPublished stored them (nil when never stored).
	Published(ctx context.Context) (map[string]string, error)
	// PutPublished stores them; nil removes them.
	PutPublished(ctx context.Context, byName map[string]string) error
	// Clear removes the mount's data and lease count.
	Clear(ctx context.Context, uuid string) error
}
