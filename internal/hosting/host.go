// Package hosting runs hosted mounts: registered container plugins (secret
// or auth, as the mount of ours hosts) mounted under this plugin's
// mounts/NAME/. A Host keeps a handle per mount, which owns that mount's
// lifecycle (start, restart, the crash-loop rule, stop) and its lease
// count, and serves requests through it;
// containers are shared between mounts of one multiplexed registration and
// reference-counted. It imports no Vault framework and nothing of the root
// package: registrations and storage come through Store, containers through
// StartFunc.
package hosting

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/reqerr"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// Config is what a Host is built from.
type Config struct {
	// Store keeps the registrations, the mounts' data and lease counts.
	Store Store
	// Start runs a plugin's container (runtime.Start on an engine).
	Start StartFunc
	// System is the system view hosted plugins get (this mount's); it is
	// asked once, at the first start.
	System func() logical.SystemView
	// Observations is where hosted plugins' observations go (this mount's
	// recorder, Vault's); nil drops them, as Vault does for a plugin
	// without one.
	Observations logical.ObservationRecorder
	// Engines answers for the engines the mounts' runtimes name: whether
	// one that did not answer is back, and removing what a dead earlier
	// instance left on it; nil skips both.
	Engines Engines
	Logger  hclog.Logger
	// StartTimeout bounds one start of a plugin: create, pull, handshake,
	// Setup and Initialize (DefaultStartTimeout when 0).
	StartTimeout time.Duration
	// StopTimeout bounds the wait for a stopping mount's requests, and
	// then its cleanup (DefaultStopTimeout when 0).
	StopTimeout time.Duration
	// RequestTimeout bounds one request to a hosted plugin
	// (DefaultRequestTimeout when 0).
	RequestTimeout time.Duration
	// StartWait bounds how long a write of a mount waits for its plugin's
	// start (DefaultStartWait when 0): past it, the start goes on and the
	// write stores the mount.
	StartWait time.Duration
	// EngineRetry is the first wait before starting a mount again after
	// its engine did not answer (a second when 0); it doubles each time.
	EngineRetry time.Duration
	// NotCrashSpacing is the least time between two restarts of a mount
	// after deaths the crash-loop rule does not count (a request killed it,
	// or its engine went down): a second when 0.
	NotCrashSpacing time.Duration
}

// Engines is what the host asks of the engines its mounts' runtimes name,
// besides starting plugins (Config.Start): nothing of any engine's own API,
// so that the host and its tests know no engine.
type Engines interface {
	// Ping is nil when the engine of rt answers, else why not.
	Ping(ctx context.Context, rt runtime.Runtime) error
	// ReapOrphans removes the plugin containers that processes of this
	// plugin, now gone, left in cluster clusterID on the engine of rt, and
	// says how many.
	ReapOrphans(ctx context.Context, rt runtime.Runtime, clusterID string) (int, error)
	// Address is where the engine of rt is reached, for logs.
	Address(rt runtime.Runtime) string
}

// DefaultStartWait is how long a write of a mount waits for its plugin to
// start: a start takes about a second, a pull or a slow handshake longer.
const DefaultStartWait = 10 * time.Second

// DefaultStartTimeout is a pull's own bound (runtime.DefaultPullTimeout)
// with a minute for the rest.
const DefaultStartTimeout = runtime.DefaultPullTimeout + time.Minute

// Host runs the hosted mounts of one mount of ours. Registrations are the
// catalog's; the host owns what runs.
type Host struct {
	cfg        Config
	ctx        context.Context // the host's own: starts run under it, Close cancels it
	cancel     context.CancelFunc
	system     func() logical.SystemView
	containers *containers
	published  publishedPaths
	metrics    *metrics
	// checksTimedOut: existence checks that used up the request limit,
	// whose writes answer the 504 at once (forward.go).
	checksTimedOut timedOutChecks
	// replaced are the replacements of containers whose engine takes them
	// away, and the stops of the old ones after their requests in flight
	// (handle.replaceLocked, track): Close waits for them. Added to only
	// under mu, and not once closed.
	replaced sync.WaitGroup

	mu      sync.Mutex
	handles map[string]*handle // by mount name
	removed map[string]bool    // UUIDs of deleted mounts: never started again
	closed  bool
}

// New makes a host; it starts nothing until asked.
func New(cfg Config) *Host {
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = DefaultStopTimeout
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.StartWait == 0 {
		cfg.StartWait = DefaultStartWait
	}
	if cfg.EngineRetry == 0 {
		cfg.EngineRetry = time.Second
	}
	if cfg.NotCrashSpacing == 0 {
		cfg.NotCrashSpacing = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	ctx, cancel := context.WithCancel(context.Background())
	var view logical.SystemView
	var viewOnce sync.Once
	h := &Host{
		cfg: cfg, ctx: ctx, cancel: cancel,
		published: publishedPaths{byName: map[string]string{}},
		system: func() logical.SystemView {
			viewOnce.Do(func() { view = &cachedTTLs{SystemView: cfg.System()} })
			return view
		},
		handles: map[string]*handle{}, removed: map[string]bool{}, metrics: newMetrics(),
	}
	h.containers = newContainers(cfg.Start, h.replaceLeaving)
	return h
}

// handle returns the handle of a stored mount, making one (stopped) when
// there is none yet. A handle of an earlier mount of the same name (deleted
// and created again, on another node say) is replaced. A deleted mount
// gets none: its late requests must not start it again.
func (h *Host) handle(m *Mount) (*handle, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errClosing
	}
	if h.removed[m.UUID] {
		return nil, notFound(m.Name)
	}
	hd := h.handles[m.Name]
	if hd != nil && hd.id != m.UUID && m.UUID != "" {
		// Another mount now has the name: the old one is gone for good,
		// and a late request that read its entry must not start it again.
		h.removed[hd.id] = true
		go hd.remove()
		hd = nil
	}
	if hd == nil {
		hd = newHandle(h, m)
		h.handles[m.Name] = hd
	}
	return hd, nil
}

// lookup finds a stored mount's handle; a 404 when there is none.
func (h *Host) lookup(ctx context.Context, name string) (*handle, error) {
	m, err := h.cfg.Store.Mount(ctx, name)
	if err != nil {
		return nil, err
	}
	if m == nil {
		return nil, notFound(name)
	}
	return h.handle(m)
}

// Put starts a new or changed mount and leaves it running, before the
// catalog stores it. A mount that cannot start is refused with the reason,
// and a changed one goes back to its old settings.
func (h *Host) Put(ctx context.Context, m, existing *Mount) error {
	if existing != nil {
		m.UUID = existing.UUID
	} else if err := m.newUUID(); err != nil {
		return err
	}
	hd, err := h.handle(m)
	if err != nil {
		return err
	}
	if err := hd.put(ctx, m, existing); err != nil {
		if errors.Is(err, ErrStillStarting) {
			return err // stored all the same: the start goes on
		}
		if existing == nil {
			h.forget(hd)
			// What a failed Initialize wrote must not greet a later mount.
			if clearErr := h.cfg.Store.Clear(ctx, m.UUID); clearErr != nil {
				h.cfg.Logger.Error("clearing what a mount that did not start wrote", "mount", m.Name, "error", clearErr)
			}
		}
		return err
	}
	return nil
}

// forget drops a handle from the registry.
func (h *Host) forget(hd *handle) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.handles[hd.name] == hd {
		delete(h.handles, hd.name)
		h.metrics.forget(hd.name)
	}
}

// Remove stops a mount and clears its data, for its deletion. A mount
// whose plugin issued leases that are still out is kept unless force is
// set: Vault would later ask it to revoke them, and nothing would. Requests
// in flight finish first; later ones get a 404.
func (h *Host) Remove(ctx context.Context, m *Mount, force bool, mountPoint string) error {
	h.mu.Lock()
	stopped := h.removed[m.UUID]
	h.mu.Unlock()
	if !stopped {
		if err := h.stop(ctx, m, force, mountPoint); err != nil {
			return err
		}
	}
	// Also when an earlier delete stopped it but could not clear its data:
	// a delete is repeated until it is done.
	if err := h.cfg.Store.Clear(ctx, m.UUID); err != nil {
		return fmt.Errorf("clearing the data of hosted mount %s: %w", m.Name, err)
	}
	return nil
}

// stop stops a mount for good, for its deletion.
func (h *Host) stop(ctx context.Context, m *Mount, force bool, mountPoint string) error {
	hd, err := h.handle(m)
	if err != nil {
		return err
	}
	leased := func(n int, err error) error {
		if err != nil {
			return err
		}
		return reqerr.BadRequestf("hosted mount %s has %d leases outstanding: revoke them first with "+
			"`vault lease revoke -prefix %s%s%s/`, or delete with force=true", m.Name, n, mountPoint, Prefix, m.Name)
	}
	if !force { // at once, without stopping it, in the usual case
		if n, err := hd.leases.outstanding(ctx); err != nil || n > 0 {
			return leased(n, err)
		}
	}
	// Again once its requests in flight are done: they may have issued one.
	if n, err := hd.removeUnlessLeased(ctx, force); err != nil || n > 0 {
		return leased(n, err)
	}
	h.mu.Lock()
	h.removed[m.UUID] = true
	h.mu.Unlock()
	h.forget(hd)
	return nil
}

// Reload restarts mounts with their plugin and runtime as registered now, as
// Vault's sys/plugins/reload does, and clears a failed state.
func (h *Host) Reload(ctx context.Context, names []string) map[string]string {
	failures := map[string]string{}
	for _, name := range names {
		hd, err := h.lookup(ctx, name)
		if err == nil {
			err = hd.reload()
		}
		if err != nil {
			failures[name] = err.Error()
		}
	}
	return failures
}

// Refresh brings a mount's handle in line with its stored entry after
// another node changed it (an invalidated key of a replicated cluster,
// where this node runs hosted backends too): a mount deleted or created
// again there is stopped here for good; one changed there is stopped, and
// its next request starts it with its new settings.
func (h *Host) Refresh(ctx context.Context, name string) {
	m, err := h.cfg.Store.Mount(ctx, name)
	if err != nil {
		h.cfg.Logger.Error("reading a hosted mount changed on another node", "mount", name, "error", err)
		return
	}
	h.mu.Lock()
	hd := h.handles[name]
	h.mu.Unlock()
	if hd == nil {
		return
	}
	if m != nil && hd.id == m.UUID {
		hd.refresh(m) // under its own lock: a start may hold it, and must not hold up other mounts
		return
	}
	h.mu.Lock()
	if h.handles[name] != hd {
		h.mu.Unlock()
		return // replaced meanwhile
	}
	h.removed[hd.id] = true
	delete(h.handles, name)
	h.mu.Unlock()
	go hd.remove()
}

// Invalidate passes an invalidated key of a hosted mount's storage (key,
// within the mount's view) to its backend: replicated clusters, where
// another node wrote it.
func (h *Host) Invalidate(ctx context.Context, uuid, key string) {
	h.mu.Lock()
	var target *handle
	for _, hd := range h.handles {
		if hd.id == uuid {
			target = hd
		}
	}
	h.mu.Unlock()
	if target != nil {
		target.invalidate(ctx, key)
	}
}

// Close stops every hosted backend and container: Vault is unmounting,
// sealing, reloading or stopping this mount.
func (h *Host) Close(ctx context.Context) {
	h.mu.Lock()
	h.closed = true
	handles := make([]*handle, 0, len(h.handles))
	for _, hd := range h.handles {
		handles = append(handles, hd)
	}
	h.mu.Unlock()
	h.cancel()
	var wg sync.WaitGroup
	for _, hd := range handles {
		wg.Add(1)
		go func() { defer wg.Done(); hd.close(ctx) }()
	}
	wg.Wait()
	h.replaced.Wait()
	h.containers.close(ctx)
}

// Status is what GET hosted/NAME adds to the settings.
type Status struct {
	State       string
	Reason      string
	ContainerID string
	OCIRuntime  string
	Started     time.Time
	Restarts    int
	Outdated    bool     // the registration changed since it started
	Shared      []string // the other mounts in the same container
}

// Status is a stored mount's state as it runs.
func (h *Host) Status(ctx context.Context, m *Mount) Status {
	hd, err := h.handle(m)
	if err != nil {
		return Status{State: StateStopped, Reason: err.Error()}
	}
	st, key := hd.status()
	if key != "" {
		if p, rt, err := h.cfg.Store.ToRun(ctx, m.Plugin); err == nil {
			st.Outdated = registrationKey(p, rt) != key
		}
	}
	return st
}
