package hosting

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/plugin/pb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
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
	if err := hd.lockCtx(ctx, hd.mu.TryLock); err != nil {
		return err
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
		settle()
		// Nothing it runs with changed (a description, say): it serves on.
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

// aliveLocked reports whether the backend can serve: set up, and its plugin
// not found gone.
func (hd *handle) aliveLocked() bool {
	return hd.run != nil && !hd.dead && !hd.run.exited()
}

// ready returns the mount's running backend with the request counted in
// (run.end ends it), (re)starting it first when it is not running or
// its plugin is gone. What Vault does for a plugin killed out of band, before the
// request rather than after a failed one. Concurrent requests that find one
// dead plugin cause one restart: the first takes the lock and restarts, the
// others then find it alive.
func (hd *handle) ready(ctx context.Context, mountPoint string) (*running, error) {
	for {
		// Read before waiting for the lock, which a start may hold: a
		// start that happens while this request waits is then seen.
		seen := hd.attempts.Load()
		if err := hd.lockCtx(ctx, hd.mu.TryRLock); err != nil {
			return nil, err
		}
		if hd.removed {
			hd.mu.RUnlock()
			return nil, notFound(hd.name)
		}
		if hd.aliveLocked() {
			if hd.state == StatePendingReload {
				hd.mu.RUnlock()
				return nil, hd.pendingError(mountPoint)
			}
			run := hd.run
			run.begin()
			hd.mu.RUnlock()
			return run, nil
		}
		hd.mu.RUnlock()

		// The restart runs under the lock, and goes on when this request
		// leaves (its time is up, its client left): its outcome serves the
		// requests after it. Waiting for the lock, or for the restart, ends
		// with the request's context, so a slow start holds no request
		// past its limit.
		if err := hd.lockCtx(ctx, hd.mu.TryLock); err != nil {
			return nil, err
		}
		done := make(chan error, 1)
		go func() {
			err := hd.recoverLocked(ctx, mountPoint, seen)
			hd.mu.Unlock()
			done <- err
		}()
		var err error
		select {
		case err = <-done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if err != nil {
			return nil, hd.named(err)
		}
	}
}

// lockCtx takes the handle's lock with try (TryLock or TryRLock), or
// gives up when ctx ends first: a start may hold the lock for as long as a
// pull or a handshake takes. The lock is free at once in the usual case.
func (hd *handle) lockCtx(ctx context.Context, try func() bool) error {
	wait := 100 * time.Microsecond
	for !try() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 20*time.Millisecond)
	}
	return nil
}

// recoverLocked brings a mount that ready found not alive back, or says
// why it cannot serve: a failed start shared with the requests queued
// behind it, the crash-loop rule, a restart. hd.mu is held.
func (hd *handle) recoverLocked(ctx context.Context, mountPoint string, seen uint64) error {
	var err error
	switch {
	case hd.removed:
		err = notFound(hd.name)
	case ctx.Err() != nil:
		// Its client left while it waited for the lock: it starts
		// nothing.
		err = ctx.Err()
	case hd.attempts.Load() != seen && !hd.aliveLocked() && hd.attemptErr != nil:
		// Another request tried a start while this one waited, and it
		// failed: its answer is this one's too, rather than one start
		// per request queued behind it.
		err = hd.attemptErr
	case hd.state == StateFailed && !hd.crash.mayRetry():
		err = hd.failedError(mountPoint)
	case hd.state == StateFailed:
		hd.state = StateStopped // its wait is over: one try
		err = hd.startLocked()
	case !hd.aliveLocked():
		crashed, wasRunning, cause := false, hd.run != nil, ""
		if wasRunning {
			if !hd.dead { // found gone before a request reached it: ask why
				hd.lastExit = hd.run.container.plugin.Explain(errContainerGone).Error()
			}
			hd.noteExit(hd.run, hd.lastExit)
			cause = hd.run.exitReason
			if hd.notCrash {
				hd.crash.lastCause = hd.lastExit // a request's or the engine's doing, not a crash
				// Spaced, so that a path that kills the plugin on every
				// request costs a start a second, not one per request.
				if err := sleepCtx(ctx, time.Until(hd.lastNotCrash.Add(hd.host.cfg.NotCrashSpacing))); err != nil {
					return err
				}
				hd.lastNotCrash = time.Now()
			} else {
				crashed = hd.crash.died(time.Since(hd.started), hd.lastExit)
			}
			if !crashed {
				hd.host.cfg.Logger.Info("restarting hosted mount", "mount", hd.name, "cause", cause)
			}
		}
		hd.stopLocked()
		if crashed {
			hd.failLocked()
		} else {
			if wasRunning {
				hd.restarts++
				hd.hist.restarted(cause)
			}
			err = hd.startLocked()
		}
	}
	if hd.state == StateFailed && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		err = hd.failedError(mountPoint)
	}
	return err
}

// serve runs one request on the mount's backend, through fn, within the
// request timeout, which bounds the whole request: a restart before it
// included. A request that may have reached the plugin is never sent
// again, whatever became of the plugin: it may have been applied (a write,
// credentials issued). Only one that provably never left this process (its
// connection was already gone) is sent once more, to the restarted plugin.
// A request that ended because its client left changes nothing; one that
// the plugin did not answer in time gets a 504 naming the mount.
func (hd *handle) serve(ctx context.Context, mountPoint string, fn func(context.Context, logical.Backend, pb.BackendClient) error) error {
	timeout := hd.host.cfg.RequestTimeout
	deadline := time.Now().Add(timeout)
	callCtx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	for attempt := 0; ; attempt++ {
		run, err := hd.ready(callCtx, mountPoint)
		if err != nil {
			if timedOut(ctx, callCtx, err, deadline) {
				return hd.timeoutError(timeout)
			}
			return err
		}
		sendCtx, sends := runtime.RecordSends(callCtx)
		err = fn(sendCtx, run.backend, run.client)
		run.end()
		switch {
		case timedOut(ctx, callCtx, err, deadline):
			return hd.timeoutError(timeout)
		case status.Code(err) == codes.ResourceExhausted:
			return logical.CodedError(http.StatusBadGateway, fmt.Sprintf("hosted mount %s answered more than the bound on a hosted "+
				"answer (max_hosted_response_bytes, at %sconfig), and was refused before it was read: %s", hd.name, mountPoint, status.Convert(err).Message()))
		case !pluginGone(callCtx, err, run.container.plugin):
			return err
		}
		plugin := run.container.plugin
		cause := plugin.Explain(err)
		reached := sends.MayHaveReached()
		if !reached && attempt == 0 {
			// It never left: the plugin died before it, and its restart
			// serves it. Not a death this request saw: ready counts it.
			hd.markDead(run, cause, false)
			continue
		}
		hd.mu.RLock()
		pluginName := hd.mount.Plugin
		hd.mu.RUnlock()
		killedBy, engineDown := requestKilled(plugin), hd.engineAnswers(pluginName) != nil
		if engineDown {
			// Its engine went down with it (dockerd stopping its
			// containers): neither the request's doing nor a crash.
			killedBy = ""
		}
		hd.markDead(run, cause, killedBy != "" || engineDown)
		if !reached {
			return logical.CodedError(http.StatusBadGateway, fmt.Sprintf("hosted mount %s: its plugin is gone again right after "+
				"its restart: %v", hd.name, cause))
		}
		why := "it may have reached the plugin and been applied"
		if killedBy != "" {
			why = "it may be what " + killedBy
		}
		code := http.StatusBadGateway
		if engineDown {
			code, why = http.StatusServiceUnavailable, "its engine went down with the plugin, and it may have reached the plugin and been applied"
		}
		return logical.CodedError(code, fmt.Sprintf("hosted mount %s: %v; this request is not sent again, as %s; "+
			"the next request restarts the plugin", hd.name, cause, why))
	}
}

// timedOut reports whether a call under callCtx, made for a client whose
// context is ctx, ended because the request's time ran out. gRPC may
// report that as the plugin's end of the stream (DeadlineExceeded, or
// Canceled from the plugin's RST_STREAM) an instant before callCtx itself
// expires: such an end within a second of the deadline is the timeout too,
// as long as the client is still there.
func timedOut(ctx, callCtx context.Context, err error, deadline time.Time) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	if callCtx.Err() == context.DeadlineExceeded {
		return true
	}
	switch status.Code(err) {
	case codes.DeadlineExceeded, codes.Canceled:
		return time.Until(deadline) < time.Second
	}
	return errors.Is(err, context.DeadlineExceeded) && time.Until(deadline) < time.Second
}

// timeoutError answers a request the mount did not answer within timeout.
func (hd *handle) timeoutError(timeout time.Duration) error {
	return logical.CodedError(http.StatusGatewayTimeout, fmt.Sprintf(
		"hosted mount %s is not answering: its plugin did not answer within %s", hd.name, timeout))
}

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
	if run == nil || !hd.aliveLocked() {
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
		st.ContainerID, st.OCIRuntime = c.plugin.ContainerID(), c.ociRuntime
		st.Shared = hd.host.containers.others(c, hd.id)
	}
	return st, hd.key
}
