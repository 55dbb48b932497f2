package hosting

// A handle's start and stop, both under its write lock.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/plugin/pb"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// startContext is the context a start runs under: the host's, bounded.
func (hd *handle) startContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(hd.host.ctx, hd.host.cfg.StartTimeout)
}

// startLocked starts the mount's backend: in a running container of the same
// registration when the plugin is multiplexed, else in a new container;
// then Setup and Initialize, as Vault does for a mount. hd.mu is held.
func (hd *handle) startLocked() error {
	if hd.removed {
		return notFound(hd.name)
	}
	now := time.Now()
	if now.Before(hd.retryAt) && !hd.engineBackLocked(now) {
		return hd.engineDownError()
	}
	ctx, cancel := hd.startContext()
	defer cancel()
	hd.starting.Store(true)
	err := hd.tryStartLocked(ctx, now)
	hd.starting.Store(false)
	if err != nil && hd.host.ctx.Err() != nil {
		// Abandoned as the host closes (Vault seals, unmounts or reloads
		// this mount): no fault of the plugin's, and nothing runs.
		hd.state, hd.reason = StateStopped, ""
		err = hd.closingError()
	} else if err != nil {
		hd.hist.failedStart()
	}
	hd.attemptErr = err
	hd.attempts.Add(1)
	return err
}

// engineAskEvery bounds how often requests during an engine's backoff ask
// it whether it is back: each asks under the mount's lock, for at most
// engineAskTimeout.
const (
	engineAskEvery   = 250 * time.Millisecond
	engineAskTimeout = time.Second
)

// engineBackLocked asks the mount's engine whether it answers again, so
// that the first request after an engine restart starts the mount, not the
// first after the backoff's wait (up to 30 s later). Asking is cheap
// (a version request) and rate-limited; a start is not. hd.mu is held.
func (hd *handle) engineBackLocked(now time.Time) bool {
	if hd.host.cfg.Engines == nil || now.Sub(hd.engineAskedAt) < engineAskEvery {
		return false
	}
	hd.engineAskedAt = now
	return hd.engineAnswers(hd.mount.Plugin) == nil
}

// engineAnswers asks the engine of plugin's runtime, within
// engineAskTimeout, whether it answers: nil if so, else why not. Unknown
// (no Config.Engines) is nil.
func (hd *handle) engineAnswers(plugin string) error {
	if hd.host.cfg.Engines == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(hd.host.ctx, engineAskTimeout)
	defer cancel()
	_, rt, err := hd.host.cfg.Store.ToRun(ctx, plugin)
	if err != nil {
		return err
	}
	return hd.host.cfg.Engines.Ping(ctx, rt)
}

// tryStartLocked is one start, and its effect on the mount's state.
func (hd *handle) tryStartLocked(ctx context.Context, now time.Time) error {
	declared := hd.mount.Paths.key()
	p, rt, err := hd.host.cfg.Store.ToRun(ctx, hd.mount.Plugin)
	if err == nil {
		err = hd.setupLocked(ctx, registrationKey(p, rt), p, rt)
	}
	if err == nil && hd.mount.Paths.key() != declared {
		// The plugin declares other special paths than stored (a new
		// image, a reload): stored, so that Vault reads these at the
		// reload that pending_reload asks for (a put stores its own, and
		// this then finds them stored). Not under this lock: a write or
		// delete of the mount holds the catalog's lock on the name while
		// it waits for this one.
		name, uuid, paths := hd.name, hd.mount.UUID, hd.mount.Paths
		go func() {
			if err := hd.host.cfg.Store.PutPaths(hd.host.ctx, name, uuid, paths); err != nil {
				hd.host.cfg.Logger.Error("storing the special paths a hosted plugin declares", "mount", name, "error", err)
			}
		}()
	}
	if hd.host.ctx.Err() != nil {
		return err // the host is closing: startLocked says so
	}
	if errors.Is(err, ErrEngineUnreachable) {
		// Not the plugin's fault: not counted against it, and tried again
		// after a wait, so that requests do not hammer an engine that is
		// restarting; the first request after it answers starts the mount.
		hd.retryAfter = min(max(2*hd.retryAfter, hd.host.cfg.EngineRetry), engineRetryMax)
		hd.retryAt = now.Add(hd.retryAfter)
		hd.state, hd.reason = StateStopped, err.Error()
		return hd.engineDownError()
	}
	if err != nil {
		hd.state, hd.reason = StateStopped, err.Error()
		if hd.crash.crashed(err.Error()) {
			hd.failLocked()
		}
		return err
	}
	hd.retryAfter, hd.retryAt = 0, time.Time{}
	hd.state, hd.reason, hd.started, hd.dead, hd.notCrash = StateRunning, "", time.Now(), false, false
	if hd.host.published.pending(hd.mount) {
		hd.state = StatePendingReload
	}
	return nil
}

func (hd *handle) setupLocked(ctx context.Context, key string, p runtime.Plugin, rt runtime.Runtime) error {
	c, err := hd.host.containers.acquire(ctx, key, hd.id, hd.name, p, rt)
	if err != nil {
		return err
	}
	m := hd.mount
	view := hd.host.cfg.Store.Data(m.UUID)
	config := map[string]string{"plugin_name": m.Plugin, "plugin_type": p.Type, "plugin_version": p.Version}
	for k, v := range m.Options {
		config[k] = v
	}
	backend, err := c.plugin.Backend(ctx, m.UUID, &logical.BackendConfig{
		StorageView: view, Logger: hd.host.cfg.Logger.Named(m.Name), System: hd.host.system(), Config: config, BackendUUID: m.UUID,
		ObservationRecorder: hd.host.cfg.Observations,
	})
	if err == nil {
		if err = backend.Initialize(ctx, &logical.InitializationRequest{Storage: view}); err != nil {
			backend.Cleanup(ctx)
			err = fmt.Errorf("initializing the hosted plugin: %w", err)
		}
	}
	if err != nil {
		hd.host.containers.release(ctx, c, hd.id)
		return err
	}
	// Entries are never modified in place (the catalog serves them to
	// other readers): paths that changed go into a copy, which put stores.
	if paths := pathsOf(backend.SpecialPaths()); paths.key() != m.Paths.key() {
		updated := *m
		updated.Paths = paths
		hd.mount = &updated
	}
	hd.run = &running{backend: backend, client: pb.NewBackendClient(c.plugin.Conn(m.UUID)), container: c}
	hd.key = key
	return nil
}

// stopLocked cleans the mount's backend up and releases its container,
// within the stop timeout.
func (hd *handle) stopLocked() {
	if hd.run == nil {
		return
	}
	hd.run.stop(hd.host.containers, hd.id, hd.dead, hd.host.cfg.StopTimeout)
	hd.run = nil
	if hd.state != StateFailed {
		hd.state = StateStopped
	}
}
