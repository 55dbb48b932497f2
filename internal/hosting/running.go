package hosting

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/plugin/pb"
)

// DefaultStopTimeout bounds how long stopping a mount waits for its
// requests in flight, and then for its backend's cleanup, before its
// container is stopped all the same: a plugin that hangs (a paused
// container) must not hold up a delete, a change or a reload.
const DefaultStopTimeout = 10 * time.Second

// DefaultRequestTimeout bounds one request to a hosted plugin, so that a
// plugin that stops answering is reported as such, naming the mount,
// before Vault's own limit (90 s) cancels the request without a reason.
const DefaultRequestTimeout = 60 * time.Second

// running is one start of a mount's backend in its container, and the
// requests it is serving. Requests hold no lock while the plugin works on
// them: the handle's lock is only held to look the backend up, so that
// stopping it (a delete, a reload, a restart) never waits on a plugin
// longer than the stop timeout.
type running struct {
	backend   logical.Backend
	client    pb.BackendClient // the same backend, for requests passed through as protocol buffers
	container *container
	calls     sync.WaitGroup // requests in flight; added to only under the handle's read lock
	// exitOnce records the container's end in the mount's history once
	// (noteExit); exitReason is its cause then, noted once recorded.
	exitOnce   sync.Once
	exitReason string
	noted      atomic.Bool
}

func (r *running) begin() { r.calls.Add(1) }
func (r *running) end()   { r.calls.Done() }

func (r *running) exited() bool { return r.container.plugin.Exited() }

// leaving: its container is being taken away, and serves only the requests
// in flight.
func (r *running) leaving() bool { return r.container.leaving() }

// drain waits for the requests in flight, for up to timeout. Past it,
// they end when the container does: their calls fail, and find the mount
// stopped or started anew.
func (r *running) drain(timeout time.Duration) {
	drained := make(chan struct{})
	go func() { r.calls.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(timeout):
	}
}

// stop waits for the requests in flight for up to timeout, cleans the
// backend up (bounded too) unless its plugin is gone, and releases its
// container, which stops when no other mount uses it. The handle's write
// lock is held, so no request joins meanwhile.
func (r *running) stop(cs *containers, id string, gone bool, timeout time.Duration) {
	r.drain(timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if !gone && !r.exited() {
		r.backend.Cleanup(ctx)
	}
	cs.release(ctx, r.container, id)
}
