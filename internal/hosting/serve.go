package hosting

// A handle's requests: finding the backend alive (or bringing it back),
// and serving a request on it within the request limit, never sending
// again one that may have reached the plugin.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/plugin/pb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

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
	case hd.leavingLocked():
		err = hd.replaceLocked()
	case !hd.aliveLocked():
		crashed, wasRunning, cause := false, hd.run != nil, ""
		if wasRunning {
			if !hd.dead { // found gone before a request reached it: ask why
				hd.lastExit = hd.run.container.plugin.Explain(errContainerGone).Error()
			}
			hd.noteExit(hd.run, hd.lastExit)
			cause = hd.run.exitReason
			if hd.notCrash || hd.run.leaving() { // taken away, then gone before a request replaced it
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
