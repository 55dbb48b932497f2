package hosting

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// Hosted mount states, as GET hosted/NAME reports them.
const (
	StateStopped       = "stopped"        // not started yet, or its last start failed (the next request retries)
	StateRunning       = "running"        // serving
	StatePendingReload = "pending_reload" // its special paths differ from those Vault enforces for it
	StateFailed        = "failed"         // crashed in a row (crashloop.go): refused, and retried after a wait
	StateStarting      = "starting"       // its plugin is starting (shown while a start holds the mount)
	// ReloadCommandFormat is the command that has Vault read a mount's
	// special paths, given this mount of ours ("runtimes/").
	ReloadCommandFormat = "vault write sys/plugins/reload/backend mounts=%s"
)

// handle is one hosted mount as it runs: it owns the mount's backend in its
// container, its state, its restarts and the crash-loop rule, and its lease
// count. Requests reach the backend only through serve, which counts them
// in (running) without holding the handle's lock while the plugin works.
type handle struct {
	host *Host
	name string
	id   string // the mount's UUID: a mount created anew gets a new handle

	// mu is held for reading while a request looks its backend up (not
	// while the plugin works on it: see running), for writing while the
	// mount is (re)started or stopped, so that no request reaches a backend
	// being replaced.
	mu       sync.RWMutex
	mount    *Mount
	run      *running // nil when stopped
	key      string   // the registration it was started with
	state    string
	reason   string
	lastExit string // why the plugin was last found gone, for the failed state's reason
	started  time.Time
	restarts int
	crash    crashLoop
	// attempts counts start attempts, attemptErr is the last one's error:
	// requests queued behind a failed start share its answer.
	attempts   atomic.Uint64 // read without the lock, before waiting for it
	attemptErr error
	// While the engine does not answer, starts are not tried before
	// retryAt; the wait doubles from Config.EngineRetry to engineRetryMax.
	retryAt    time.Time
	retryAfter time.Duration
	// engineAskedAt is when a request last asked the engine whether it is
	// back, during that wait (engineBackLocked).
	engineAskedAt time.Time
	dead          bool // a forwarded call found the plugin gone
	// notCrash: it died during a request that may have killed it
	// (requestKilled), or with its engine; the crash-loop rule counts
	// neither: a plugin that panics on one path must not fail the mount for
	// every path, nor an engine restart every busy mount.
	notCrash     bool
	lastNotCrash time.Time // when a restart after such a death last ran
	removed      bool      // deleted: never started again

	leases leaseCount
	hist   history // how its containers ended (health.go)
	// starting is set while a start holds the lock: a read of the mount's
	// state then says so rather than wait for it.
	starting atomic.Bool
}

func newHandle(h *Host, m *Mount) *handle {
	hd := &handle{host: h, name: m.Name, id: m.UUID, mount: m, state: StateStopped}
	hd.leases = leaseCount{store: h.cfg.Store, id: m.UUID, logger: h.cfg.Logger.With("mount", m.Name)}
	return hd
}

// put runs the mount with new settings m, its old ones being existing (nil
// for a new mount); when m does not start, the old settings run again. A
// start that takes longer than the host's StartWait goes on without the
// write, which then stores m (ErrStillStarting): Vault waits for every
// request in flight before it seals, so a write must not hold a seal for
// as long as a pull or a slow handshake takes. Such a start that fails
// later leaves the mount stopped with its reason, as one at unseal does;
// the old settings are not run again, as the new ones are stored.
func (hd *handle) put(ctx context.Context, m, existing *Mount) error {
	// Another start may hold the mount (a request's restart): the write
	// waits for it no longer than for its own.
	lockCtx, cancel := context.WithTimeout(ctx, hd.host.cfg.StartWait)
	err := hd.lockCtx(lockCtx, hd.mu.TryLock)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return logical.CodedError(http.StatusServiceUnavailable, fmt.Sprintf(
			"hosted mount %s is busy starting its plugin: retry the write in a moment", hd.name))
	}
	var gate sync.Mutex
	finished, detached := false, false
	// settle decides once whether the write waits for this start's end.
	settle := func() (waited bool) {
		gate.Lock()
		defer gate.Unlock()
		finished = !detached
		return finished
	}
	done := make(chan error, 1)
	go func() {
		err := hd.putLocked(m, existing, settle)
		hd.mu.Unlock()
		done <- err
	}()
	timer := time.NewTimer(hd.host.cfg.StartWait)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
	}
	gate.Lock()
	if finished {
		gate.Unlock()
		return <-done
	}
	detached = true
	gate.Unlock()
	return ErrStillStarting
}

// putLocked is put's work under the lock; settle says, once the start has
// ended, whether the write still waits for it.
func (hd *handle) putLocked(m, existing *Mount, settle func() bool) error {
	if existing != nil && len(m.Changes(existing)) == 0 && hd.state == StateRunning && hd.aliveLocked() {
		// Nothing it runs with changed (a description, say): it serves on.
		if !settle() { // stored by the write meanwhile: not touched again
			updated := *m
			updated.Paths = hd.mount.Paths
			hd.mount = &updated
			return nil
		}
		m.Paths = hd.mount.Paths
		hd.mount = m
		return nil
	}
	hd.stopLocked()
	old := hd.mount
	hd.mount, hd.restarts, hd.state = m, 0, StateStopped
	hd.crash.reset()
	hd.retryAt = time.Time{} // an operator's write tries at once
	err := hd.startLocked()
	if !settle() {
		// The write has stored m, and left: it is not touched again.
		if err == nil {
			updated := *m
			updated.Paths = hd.mount.Paths
			hd.mount = &updated
		}
		return err
	}
	if err == nil {
		// m is not stored yet: it is stored with the paths its plugin
		// declared.
		m.Paths, hd.mount = hd.mount.Paths, m
	}
	if err != nil && existing != nil {
		hd.mount = old
		if restartErr := hd.startLocked(); restartErr != nil {
			hd.host.cfg.Logger.Error("restarting a hosted mount with its old settings", "mount", hd.name, "error", restartErr)
		}
	}
	return err
}

// servingLocked reports whether the backend serves: set up, and its plugin
// not found gone. It is alive, or leaving.
func (hd *handle) servingLocked() bool {
	return hd.run != nil && !hd.dead && !hd.run.exited()
}

// aliveLocked reports whether the backend can serve new requests: serving,
// and its container not being taken away.
func (hd *handle) aliveLocked() bool { return hd.servingLocked() && !hd.run.leaving() }

// leavingLocked reports whether the backend's container is being taken
// away while its plugin still serves its requests in flight.
func (hd *handle) leavingLocked() bool { return hd.servingLocked() && hd.run.leaving() }

// refresh takes the settings of m, stored by another node for this same
// mount: unless they are the ones it runs, it stops, and its next request
// starts it with them. Its leases and data are the same mount's.
func (hd *handle) refresh(m *Mount) {
	hd.mu.Lock()
	defer hd.mu.Unlock()
	if hd.mount.Plugin == m.Plugin && maps.Equal(hd.mount.Options, m.Options) && hd.mount.Paths.Equal(m.Paths) {
		return
	}
	hd.stopLocked()
	copied := *m
	hd.mount, hd.state, hd.reason = &copied, StateStopped, ""
	hd.crash.reset()
	hd.retryAt = time.Time{}
}

// markDead records that the plugin of run is gone, and why, and whether
// its death was something else's doing (a request's, its engine's) rather
// than a crash; the next request restarts it.
func (hd *handle) markDead(run *running, cause error, notCrash bool) {
	hd.mu.Lock()
	defer hd.mu.Unlock()
	if hd.run == run {
		hd.dead, hd.lastExit, hd.notCrash = true, cause.Error(), notCrash
	}
}

// reload restarts the mount with its registration as it is now, and clears
// a failed state.
func (hd *handle) reload() error {
	hd.mu.Lock()
	defer hd.mu.Unlock()
	hd.stopLocked()
	hd.state, hd.retryAt = StateStopped, time.Time{}
	hd.crash.reset()
	return hd.startLocked()
}

// failLocked fails the mount by the crash-loop rule.
func (hd *handle) failLocked() {
	hd.state, hd.reason = StateFailed, hd.crash.reason()
	hd.host.cfg.Logger.Error("hosted mount failed", "mount", hd.name, "reason", hd.reason, "retry_at", hd.crash.retryAt)
}

// startIdle starts a mount that is not running and not failed: at mount
// and unseal time.
func (hd *handle) startIdle() error {
	hd.mu.Lock()
	defer hd.mu.Unlock()
	if hd.run != nil || hd.state == StateFailed || hd.removed {
		return nil
	}
	return hd.startLocked()
}

// remove stops the mount for good, after the requests in flight; its lease
// count goes with it.
func (hd *handle) remove() { hd.removeUnlessLeased(context.Background(), true) }

// removeUnlessLeased stops the mount for good once its requests in flight
// are done. Unless force, it is not removed while its leases are out,
// counted after those requests, which may have issued some: it reports
// how many, and serves on.
func (hd *handle) removeUnlessLeased(ctx context.Context, force bool) (int, error) {
	hd.mu.Lock()
	defer hd.mu.Unlock()
	if !force {
		if hd.run != nil {
			hd.run.drain(hd.host.cfg.StopTimeout) // the lock keeps new ones out
		}
		if n, err := hd.leases.outstanding(ctx); err != nil || n > 0 {
			return n, err // refused: it serves on
		}
	}
	hd.stopLocked()
	hd.state = StateStopped
	hd.removed = true
	hd.leases.drop()
	return 0, nil
}

// close stops the mount as this mount of ours goes away, its lease count
// written first.
func (hd *handle) close(ctx context.Context) {
	hd.leases.flush(ctx)
	hd.mu.Lock()
	defer hd.mu.Unlock()
	hd.stopLocked()
}

// invalidate passes an invalidated key to the running backend, as a
// request is: counted in, without the lock, and bounded.
func (hd *handle) invalidate(ctx context.Context, key string) {
	hd.mu.RLock()
	run := hd.run
	if !hd.servingLocked() { // one leaving still serves
		hd.mu.RUnlock()
		return
	}
	run.begin()
	hd.mu.RUnlock()
	defer run.end()
	ctx, cancel := context.WithTimeout(ctx, hd.host.cfg.RequestTimeout)
	defer cancel()
	run.backend.InvalidateKey(ctx, key)
}

// status is the mount's state and the registration key it runs; while a
// start holds the mount, that it is starting, without waiting for it.
func (hd *handle) status() (Status, string) {
	if !hd.mu.TryRLock() {
		if hd.starting.Load() {
			return Status{State: StateStarting, Reason: "its plugin is starting"}, ""
		}
		hd.mu.RLock()
	}
	defer hd.mu.RUnlock()
	st := Status{State: hd.state, Reason: hd.reason, Started: hd.started, Restarts: hd.restarts}
	if hd.run != nil && (hd.dead || hd.run.exited()) {
		st.State, st.Reason = StateStopped, "its container is gone: the next request restarts it"
		if hd.lastExit != "" {
			st.Reason += "; " + hd.lastExit
		}
	}
	if hd.run != nil && st.State != StateStopped {
		// A container that is gone has no ID worth showing: nothing by it
		// exists any more.
		c := hd.run.container
		st.ContainerID, st.OCIRuntime = c.plugin.ID(), c.ociRuntime
		st.Shared = hd.host.containers.others(c, hd.id)
	}
	return st, hd.key
}
