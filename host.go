package runtimecatalog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-uuid"
	"github.com/hashicorp/vault/sdk/logical"
	vaultplugin "github.com/hashicorp/vault/sdk/plugin"
	"github.com/hashicorp/vault/sdk/plugin/pb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// Hosted mount states, as GET mounts/NAME reports them.
const (
	stateStopped        = "stopped"        // not started yet, or its last start failed (the next request retries)
	stateRunning        = "running"        // serving
	statePendingReload  = "pending_reload" // declares special paths Vault has not read yet
	stateFailed         = "failed"         // kept failing: refused until a reload
	crashLoopWindow     = time.Minute
	crashLoopStarts     = 3 // starts within the window after which a mount is failed
	hostedMountsPrefix  = "mounts/"
	reloadCommandFormat = "vault write sys/plugins/reload/backend mounts=%s"
)

// host runs the hosted mounts: it starts their plugins' containers (one per
// registration when the plugin is multiplexed, else one per mount), sets up
// each mount's backend in it with the mount's own storage view, forwards
// requests, restarts what died, and stops everything when the mount of ours
// goes away. Registrations are the catalog's; the host owns what runs.
type host struct {
	storage logical.Storage
	catalog *catalog
	engine  func(runtime.Runtime) (runtime.Engine, error)
	options func(ctx context.Context, logName string) runtime.Options
	system  func() logical.SystemView
	logger  hclog.Logger

	mu         sync.Mutex
	mounts     map[string]*hostedMount
	containers map[string]*hostedContainer // running containers by key
	published  map[string]string           // mount -> the special paths Vault read for it (hostedPaths.key)
	closed     bool
}

// hostedMount is one hosted mount as it runs.
type hostedMount struct {
	name string
	// mu is held for reading while a request is served, for writing while
	// the mount is (re)started or stopped: a restart waits for requests in
	// flight, and no request reaches a backend being replaced.
	mu        sync.RWMutex
	entry     *mountEntry
	backend   logical.Backend
	client    pb.BackendClient // the same backend, for requests passed through as protocol buffers
	container *hostedContainer
	key       string // the registration it was started with
	state     string
	reason    string
	started   time.Time
	restarts  int
	starts    []time.Time // recent starts, for the crash-loop rule
	dead      bool        // a forwarded call found the plugin gone
	// The lease count, written behind (countLeases).
	leaseMu           sync.Mutex
	leaseCount        int
	leasesLoaded      bool
	leaseFlushPending bool
}

// current is the mount's registration as it runs now.
func (hm *hostedMount) current() *mountEntry {
	hm.mu.RLock()
	defer hm.mu.RUnlock()
	return hm.entry
}

// hostedContainer is a running plugin container and the mounts it serves.
type hostedContainer struct {
	key         string
	running     *runtime.Running
	ociRuntime  string
	multiplexed bool
	users       map[string]bool
}

func newHost(s logical.Storage, c *catalog, engine func(runtime.Runtime) (runtime.Engine, error),
	options func(context.Context, string) runtime.Options, system func() logical.SystemView, logger hclog.Logger,
) *host {
	return &host{
		storage: s, catalog: c, engine: engine, options: options, system: system, logger: logger,
		mounts: map[string]*hostedMount{}, containers: map[string]*hostedContainer{}, published: map[string]string{},
	}
}

// hostedPath splits a request path into a hosted mount's name and the path
// within it: "mounts/kv/data/x" is ("kv", "data/x"), "mounts/kv/" is ("kv",
// ""). "mounts/kv" is not hosted: it is the mount's own settings.
func hostedPath(path string) (name, rest string, ok bool) {
	after, ok := strings.CutPrefix(path, hostedMountsPrefix)
	if !ok {
		return "", "", false
	}
	if name, rest, ok = strings.Cut(after, "/"); !ok {
		return "", "", false
	}
	return name, rest, true
}

// registrationKey identifies what a container runs: mounts of the same
// plugin with the same runtime settings may share a container, as Vault's
// own catalog shares one between mounts of an identical registration.
func registrationKey(p runtime.Plugin, r runtime.Runtime) string {
	encoded, _ := json.Marshal(struct {
		P runtime.Plugin
		R runtime.Runtime
	}{p, r})
	sum := sha256.Sum256(encoded)
	return hex.EncodeToString(sum[:])
}

// mount returns the running state of a stored mount, making it (stopped)
// when there is none yet.
func (h *host) mount(entry *mountEntry) *hostedMount {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.mounts[entry.Name]
	if m == nil {
		m = &hostedMount{name: entry.Name, entry: entry, state: stateStopped}
		h.mounts[entry.Name] = m
	}
	return m
}

// SpecialPaths adds to own the paths Vault must enforce for the hosted
// mounts, and records that Vault has read them. Vault's root paths match
// the longest prefix, and an exact entry overrides a shorter wildcard:
// own holds "mounts/*" (every mount's settings, and every path of a mount
// Vault has not read yet, need sudo); each mount read here adds the exact
// "mounts/NAME/", which lifts that for its data, plus its plugin's own root
// and unauthenticated paths under it. An exact entry also matches itself,
// so the list of a mount's top level keeps needing sudo: an exact
// "mounts/NAME" instead would lift sudo from a new mount named NAMEx.
func (h *host) SpecialPaths(own *logical.Paths, entries []*mountEntry) *logical.Paths {
	paths := *own
	paths.Root = append([]string(nil), own.Root...)
	paths.Unauthenticated = append([]string(nil), own.Unauthenticated...)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.published = map[string]string{}
	for _, e := range entries {
		prefix := hostedMountsPrefix + e.Name + "/"
		paths.Root = append(paths.Root, prefix)
		for _, p := range e.Paths.Root {
			paths.Root = append(paths.Root, prefix+p)
		}
		for _, p := range e.Paths.Unauthenticated {
			paths.Unauthenticated = append(paths.Unauthenticated, prefix+p)
		}
		h.published[e.Name] = e.Paths.key()
	}
	return &paths
}

// pendingReload reports whether a mount's plugin declares special paths that
// Vault has not read for it: they are not enforced until a reload.
func (h *host) pendingReload(e *mountEntry) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	published, ok := h.published[e.Name]
	return !e.Paths.empty() && (!ok || published != e.Paths.key())
}

// pendingPublish reports whether Vault has not read a mount's paths yet:
// until it does, the "mounts/*" wildcard makes every path of it need sudo.
func (h *host) pendingPublish(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.published[name]
	return !ok
}

// Invalidate passes an invalidated key of a hosted mount's storage to its
// backend (replicated clusters, where another node wrote it).
func (h *host) Invalidate(ctx context.Context, key string) {
	rest, ok := strings.CutPrefix(key, hostedDataPrefix)
	if !ok {
		return
	}
	id, rest, _ := strings.Cut(rest, "/")
	h.mu.Lock()
	var target *hostedMount
	for _, hm := range h.mounts {
		if hm.entry.UUID == id {
			target = hm
		}
	}
	h.mu.Unlock()
	if target == nil {
		return
	}
	target.mu.RLock()
	defer target.mu.RUnlock()
	if target.backend != nil {
		target.backend.InvalidateKey(ctx, rest)
	}
}

// Put starts a new or changed mount and leaves it running, before the
// catalog stores it. A mount that cannot start is refused with the reason,
// and a changed one goes back to its old settings.
func (h *host) Put(ctx context.Context, m, existing *mountEntry) error {
	if existing == nil {
		id, err := uuid.GenerateUUID()
		if err != nil {
			return err
		}
		m.UUID = id
	} else {
		m.UUID = existing.UUID
	}
	hm := h.mount(m)
	hm.mu.Lock()
	defer hm.mu.Unlock()
	h.stopLocked(ctx, hm)
	old := hm.entry
	hm.entry, hm.starts, hm.restarts = m, nil, 0
	if err := h.startLocked(ctx, hm); err != nil {
		if existing == nil {
			// What a failed Initialize wrote must not greet a later mount.
			logical.ClearView(ctx, logical.NewStorageView(h.storage, m.dataPrefix()))
			h.mu.Lock()
			delete(h.mounts, m.Name)
			h.mu.Unlock()
		} else {
			hm.entry = old
			if restartErr := h.startLocked(ctx, hm); restartErr != nil {
				h.logger.Error("restarting a hosted mount with its old settings", "mount", m.Name, "error", restartErr)
			}
		}
		return err
	}
	return nil
}

// startLocked starts the mount's backend: in a running container of the same
// registration when the plugin is multiplexed, else in a new container;
// then Setup and Initialize, as Vault does for a mount. hm.mu is held.
func (h *host) startLocked(ctx context.Context, hm *hostedMount) error {
	e := hm.entry
	now := time.Now()
	recent := hm.starts[:0]
	for _, t := range hm.starts {
		if now.Sub(t) < crashLoopWindow {
			recent = append(recent, t)
		}
	}
	hm.starts = append(recent, now)
	if len(hm.starts) > crashLoopStarts {
		hm.state = stateFailed
		hm.reason = fmt.Sprintf("started %d times within %s; last: %s", len(hm.starts), crashLoopWindow, hm.reason)
		return h.failedError(hm)
	}

	p, rt, err := h.catalog.ToRun(ctx, e.pluginID())
	if err == nil {
		err = h.setupLocked(ctx, hm, p, rt)
	}
	if err != nil {
		hm.state, hm.reason = stateStopped, err.Error()
		return err
	}
	hm.state, hm.reason, hm.started, hm.dead = stateRunning, "", time.Now(), false
	if h.pendingReload(e) {
		hm.state = statePendingReload
	}
	return nil
}

func (h *host) setupLocked(ctx context.Context, hm *hostedMount, p runtime.Plugin, rt runtime.Runtime) error {
	key := registrationKey(p, rt)
	c, err := h.acquire(ctx, key, hm.name, p, rt)
	if err != nil {
		return err
	}
	e := hm.entry
	view := logical.NewStorageView(h.storage, e.dataPrefix())
	config := map[string]string{"plugin_name": e.Plugin, "plugin_type": "secret", "plugin_version": p.Version}
	for k, v := range e.Options {
		config[k] = v
	}
	backend, err := c.running.Backend(ctx, e.UUID, &logical.BackendConfig{
		StorageView: view, Logger: h.logger.Named(e.Name), System: h.system(), Config: config, BackendUUID: e.UUID,
	})
	if err == nil {
		if err = backend.Initialize(ctx, &logical.InitializationRequest{Storage: view}); err != nil {
			backend.Cleanup(ctx)
			err = fmt.Errorf("initializing the hosted plugin: %w", err)
		}
	}
	if err != nil {
		h.release(ctx, c, hm.name)
		return err
	}
	e.Paths = pathsOf(backend.SpecialPaths())
	hm.backend, hm.container, hm.key = backend, c, key
	hm.client = pb.NewBackendClient(c.running.Conn(e.UUID))
	return nil
}

// acquire returns a running container for the registration, starting one
// when none can be shared.
func (h *host) acquire(ctx context.Context, key, mount string, p runtime.Plugin, rt runtime.Runtime) (*hostedContainer, error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, errors.New("the mount is shutting down")
	}
	if c := h.containers[key]; c != nil && c.multiplexed && !c.running.Exited() {
		c.users[mount] = true
		h.mu.Unlock()
		return c, nil
	}
	h.mu.Unlock()

	engine, err := h.engine(rt)
	if err != nil {
		return nil, err
	}
	running, err := runtime.Start(ctx, engine, p, rt, h.options(ctx, "hosted."+mount))
	if err != nil {
		return nil, startFailure(pluginID{p.Type, p.Name}, err)
	}
	multiplexed, err := running.Multiplexed(ctx)
	if err != nil {
		running.Stop(ctx)
		return nil, fmt.Errorf("asking plugin secret/%s whether it multiplexes: %w", p.Name, err)
	}
	c := &hostedContainer{key: key, running: running, ociRuntime: rt.EffectiveOCIRuntime(), multiplexed: multiplexed, users: map[string]bool{mount: true}}
	if !multiplexed {
		c.key = key + "/" + mount // one container per mount
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		go running.Stop(context.Background())
		return nil, errors.New("the mount is shutting down")
	}
	if other := h.containers[c.key]; other != nil {
		if multiplexed && !other.running.Exited() { // another mount started one meanwhile: share it
			go running.Stop(context.Background())
			other.users[mount] = true
			return other, nil
		}
		go other.running.Stop(context.Background()) // dead: its users move on as they notice
	}
	h.containers[c.key] = c
	return c, nil
}

// release drops a mount from its container, stopping the container when no
// mount is left on it.
func (h *host) release(ctx context.Context, c *hostedContainer, mount string) {
	h.mu.Lock()
	delete(c.users, mount)
	last := len(c.users) == 0
	if last && h.containers[c.key] == c {
		delete(h.containers, c.key)
	}
	h.mu.Unlock()
	switch {
	case last && c.running.Exited():
		// Already dead: its cleanup need not hold up the restart.
		go c.running.Stop(context.Background())
	case last:
		c.running.Stop(ctx)
	}
}

// stopLocked cleans the mount's backend up and releases its container.
func (h *host) stopLocked(ctx context.Context, hm *hostedMount) {
	if hm.backend == nil {
		return
	}
	if !hm.dead && !hm.container.running.Exited() {
		hm.backend.Cleanup(ctx)
	}
	h.release(ctx, hm.container, hm.name)
	hm.backend, hm.client, hm.container = nil, nil, nil
	if hm.state != stateFailed {
		hm.state = stateStopped
	}
}

func (h *host) failedError(hm *hostedMount) error {
	return logical.CodedError(http.StatusBadGateway, fmt.Sprintf("hosted mount %s failed: %s; after fixing the cause, "+
		"restart it with: vault write -f <this mount>/plugins/reload mounts=%s", hm.name, hm.reason, hm.name))
}

// ready returns the mount's backend, (re)starting it first when it is not
// running or its container is gone, and a function to call when the
// request is done. What Vault does for a plugin killed out of band, before
// the request rather than after a failed one.
func (h *host) ready(ctx context.Context, hm *hostedMount, mountPoint string) (logical.Backend, func(), error) {
	// The backend, and hm.client beside it, stay while the read lock is held.
	for {
		hm.mu.RLock()
		alive := hm.backend != nil && !hm.dead && !hm.container.running.Exited()
		if alive {
			if hm.state == statePendingReload {
				hm.mu.RUnlock()
				return nil, nil, logical.CodedError(http.StatusServiceUnavailable, fmt.Sprintf(
					"hosted mount %s declares special paths (sudo or unauthenticated) that Vault has not read yet: "+
						"run `%s` to have them enforced, then retry", hm.name, fmt.Sprintf(reloadCommandFormat, mountPoint)))
			}
			return hm.backend, hm.mu.RUnlock, nil
		}
		state := hm.state
		hm.mu.RUnlock()
		if state == stateFailed {
			return nil, nil, h.failedError(hm)
		}

		hm.mu.Lock()
		var err error
		if hm.backend == nil || hm.dead || hm.container.running.Exited() {
			if hm.backend != nil {
				hm.restarts++
				h.logger.Warn("hosted plugin is gone: restarting it", "mount", hm.name)
			}
			h.stopLocked(ctx, hm)
			err = h.startLocked(ctx, hm)
		}
		hm.mu.Unlock()
		if err != nil {
			return nil, nil, err
		}
	}
}

// pluginGone reports whether a forwarded call failed because the plugin's
// process is gone (killed, or its engine restarted) rather than with an
// answer of the plugin's.
func pluginGone(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, vaultplugin.ErrPluginShutdown) {
		return true
	}
	switch status.Code(errors.Unwrap(err)) {
	case codes.Unavailable, codes.Canceled:
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.Canceled:
		return true
	}
	return strings.Contains(err.Error(), "transport is closing") || strings.Contains(err.Error(), "connection refused")
}

// Forward serves a request for a hosted mount: the path within the mount,
// and the mount point the plugin sees, are the hosted mount's. A plugin
// found gone mid-request is restarted and the request sent once more.
func (h *host) Forward(ctx context.Context, name, rest string, req *logical.Request) (*logical.Response, error) {
	hm, err := h.lookup(ctx, name)
	if err != nil {
		return nil, err
	}
	forwarded := *req
	forwarded.Path = rest
	forwarded.MountPoint = req.MountPoint + hostedMountsPrefix + name + "/"
	for attempt := 0; ; attempt++ {
		backend, done, err := h.ready(ctx, hm, req.MountPoint)
		if err != nil {
			return nil, err
		}
		resp, err := backend.HandleRequest(ctx, &forwarded)
		done()
		if pluginGone(err) && attempt == 0 {
			h.markDead(hm, backend)
			continue
		}
		if err == nil {
			e := hm.current()
			if resp != nil && resp.Secret != nil && !keepsLease(e, req.IsSnapshotReadOrList()) {
				withoutLease := *resp
				withoutLease.Secret = nil
				resp = &withoutLease
			}
			h.countLeases(ctx, hm, req.Operation, resp != nil && resp.Secret != nil)
		}
		return resp, err
	}
}

// ForwardProto is Forward for a request as Vault's protocol buffer, passed
// to the hosted plugin without being decoded into Go values and encoded
// again; the reply comes back the same way.
func (h *host) ForwardProto(ctx context.Context, name, rest string, args *pb.HandleRequestArgs) (*pb.HandleRequestReply, error) {
	hm, err := h.lookup(ctx, name)
	if err != nil {
		return protoReply(err)
	}
	mountPoint := args.Request.MountPoint
	args.Request.MountPoint += hostedMountsPrefix + name + "/"
	args.Request.Path = rest
	operation := logical.Operation(args.Request.Operation)
	snapshot := args.Request.RequiresSnapshotID != ""
	for attempt := 0; ; attempt++ {
		backend, done, err := h.ready(ctx, hm, mountPoint)
		if err != nil {
			return protoReply(err)
		}
		client, e := hm.client, hm.entry
		reply, err := client.HandleRequest(forwardedMetadata(ctx), args)
		done()
		if pluginGone(err) && attempt == 0 {
			h.markDead(hm, backend)
			continue
		}
		if err != nil {
			return reply, err
		}
		issued := reply.Response != nil && reply.Response.Secret != nil
		if issued && !keepsLease(e, snapshot) {
			reply.Response.Secret, issued = nil, false
		}
		h.countLeases(ctx, hm, operation, issued)
		return reply, nil
	}
}

// ExistenceCheck asks the hosted plugin, so that Vault tells create from
// update for its paths as it would for the plugin mounted on its own.
func (h *host) ExistenceCheck(ctx context.Context, name, rest string, req *logical.Request) (bool, bool, error) {
	hm, err := h.lookup(ctx, name)
	if err != nil {
		return false, false, nil // the request itself gets the 404
	}
	backend, done, err := h.ready(ctx, hm, req.MountPoint)
	if err != nil {
		return false, false, err
	}
	defer done()
	forwarded := *req
	forwarded.Path = rest
	forwarded.MountPoint = req.MountPoint + hostedMountsPrefix + name + "/"
	return backend.HandleExistenceCheck(ctx, &forwarded)
}

func (h *host) markDead(hm *hostedMount, backend logical.Backend) {
	hm.mu.Lock()
	defer hm.mu.Unlock()
	if hm.backend == backend {
		hm.dead = true
	}
}

// lookup finds a stored mount; a 404 when there is none.
func (h *host) lookup(ctx context.Context, name string) (*hostedMount, error) {
	e, err := h.catalog.Mount(ctx, name)
	if err != nil {
		return nil, err
	}
	if e == nil {
		return nil, logical.CodedError(http.StatusNotFound, "no hosted mount "+name)
	}
	return h.mount(e), nil
}

// Rollback sends Vault's periodic rollback to every hosted backend, as Vault
// sends one to every mount: their periodic functions and WAL rollbacks run,
// and a plugin that died while idle is restarted.
func (h *host) Rollback(ctx context.Context, req *logical.Request) {
	entries, err := h.catalog.Mounts(ctx)
	if err != nil {
		h.logger.Error("listing hosted mounts for rollback", "error", err)
		return
	}
	var wg sync.WaitGroup
	for _, e := range entries {
		wg.Add(1)
		go func(name string) {
			defer wg.Done()
			if _, err := h.Forward(ctx, name, "", req); err != nil && !errors.Is(err, logical.ErrUnsupportedOperation) {
				h.logger.Debug("rollback of a hosted mount", "mount", name, "error", err)
			}
		}(e.Name)
	}
	wg.Wait()
}

// StartAll starts every stored mount, at mount and unseal time, so that
// they serve at once and their periodic work runs; a failure is the mount's
// state and reason, and its next request tries again. Before that, the
// containers a dead earlier instance of this plugin left are removed.
func (h *host) StartAll(ctx context.Context, clusterID string) {
	entries, err := h.catalog.Mounts(ctx)
	if err != nil {
		h.logger.Error("listing hosted mounts", "error", err)
		return
	}
	// The engines to reap on: the default one, and those of the mounts'
	// runtimes (a Podman service, say).
	engines := map[string]runtime.Runtime{"": {}}
	for _, e := range entries {
		if _, rt, err := h.catalog.ToRun(ctx, e.pluginID()); err == nil {
			engines[rt.Engine] = rt
		}
	}
	for _, rt := range engines {
		engine, err := h.engine(rt)
		if err != nil {
			continue
		}
		if lister, ok := engine.(runtime.Lister); ok {
			if removed, err := runtime.ReapOrphans(ctx, lister, clusterID); err != nil {
				h.logger.Warn("removing orphaned plugin containers", "engine", runtime.EngineAddress(rt.Engine), "error", err)
			} else if len(removed) > 0 {
				h.logger.Info("removed plugin containers of a process that is gone", "engine", runtime.EngineAddress(rt.Engine), "count", len(removed))
			}
		}
	}
	if n := runtime.ReapSocketRoots(); n > 0 {
		h.logger.Info("removed the socket directories of processes that are gone", "count", n)
	}
	for _, e := range entries {
		hm := h.mount(e)
		hm.mu.Lock()
		if hm.backend == nil && hm.state != stateFailed {
			if err := h.startLocked(ctx, hm); err != nil {
				h.logger.Error("starting a hosted mount", "mount", e.Name, "error", err)
			}
		}
		hm.mu.Unlock()
	}
}

// Reload restarts mounts with their plugin and runtime as registered now, as
// Vault's sys/plugins/reload does, and clears a failed state.
func (h *host) Reload(ctx context.Context, names []string) map[string]string {
	failures := map[string]string{}
	for _, name := range names {
		hm, err := h.lookup(ctx, name)
		if err == nil {
			hm.mu.Lock()
			h.stopLocked(ctx, hm)
			hm.state, hm.starts = stateStopped, nil
			err = h.startLocked(ctx, hm)
			hm.mu.Unlock()
		}
		if err != nil {
			failures[name] = err.Error()
		}
	}
	return failures
}

// Remove stops a mount and clears its data, for its deletion. A mount
// whose plugin issued leases that are still out is kept unless force is
// set: Vault would later ask it to revoke them, and nothing would.
func (h *host) Remove(ctx context.Context, e *mountEntry, force bool, mountPoint string) error {
	if !force {
		if n, err := h.leases(ctx, e); err != nil {
			return err
		} else if n > 0 {
			return badRequestf("hosted mount %s has %d leases outstanding: revoke them first with "+
				"`vault lease revoke -prefix %s%s%s/`, or delete with force=true", e.Name, n, mountPoint, hostedMountsPrefix, e.Name)
		}
	}
	hm := h.mount(e)
	hm.mu.Lock()
	h.stopLocked(ctx, hm)
	hm.state = stateStopped
	hm.mu.Unlock()
	hm.leaseMu.Lock()
	hm.leaseFlushPending = false // the count goes with the mount
	hm.leaseMu.Unlock()
	h.mu.Lock()
	delete(h.mounts, e.Name)
	h.mu.Unlock()
	if err := logical.ClearView(ctx, logical.NewStorageView(h.storage, e.dataPrefix())); err != nil {
		return fmt.Errorf("clearing the data of hosted mount %s: %w", e.Name, err)
	}
	return h.storage.Delete(ctx, leasesKey(e))
}

// Close stops every hosted backend and container: Vault is unmounting,
// sealing, reloading or stopping this mount.
func (h *host) Close(ctx context.Context) {
	h.mu.Lock()
	h.closed = true
	mounts := make([]*hostedMount, 0, len(h.mounts))
	for _, hm := range h.mounts {
		mounts = append(mounts, hm)
	}
	h.mu.Unlock()
	for _, hm := range mounts {
		h.flushLeases(ctx, hm)
		hm.mu.Lock()
		h.stopLocked(ctx, hm)
		hm.mu.Unlock()
	}
	h.mu.Lock()
	containers := h.containers
	h.containers = map[string]*hostedContainer{}
	h.mu.Unlock()
	for _, c := range containers {
		c.running.Stop(ctx)
	}
}

// mountStatus is what GET mounts/NAME adds to the settings.
type mountStatus struct {
	State       string
	Reason      string
	ContainerID string
	OCIRuntime  string
	Started     time.Time
	Restarts    int
	Outdated    bool
	Shared      []string // the other mounts in the same container
}

func (h *host) Status(ctx context.Context, e *mountEntry) mountStatus {
	hm := h.mount(e)
	hm.mu.RLock()
	defer hm.mu.RUnlock()
	st := mountStatus{State: hm.state, Reason: hm.reason, Started: hm.started, Restarts: hm.restarts}
	if hm.backend != nil && !hm.dead && hm.container.running.Exited() {
		st.State, st.Reason = stateStopped, "its container is gone: the next request restarts it"
	}
	if c := hm.container; c != nil {
		st.ContainerID, st.OCIRuntime = c.running.Runner.ID(), c.ociRuntime
		h.mu.Lock()
		for other := range c.users {
			if other != hm.name {
				st.Shared = append(st.Shared, other)
			}
		}
		h.mu.Unlock()
		sort.Strings(st.Shared)
	}
	if hm.key != "" {
		if p, rt, err := h.catalog.ToRun(ctx, e.pluginID()); err == nil {
			st.Outdated = registrationKey(p, rt) != hm.key
		}
	}
	return st
}

// keepsLease is Vault's own rule for a plugin named kv: its secrets carry a
// TTL for information but get no lease unless the mount has
// leased_passthrough=true (and never for a snapshot read). Vault applies it
// by the mount's plugin name, which for a hosted mount is ours, so the host
// applies it: otherwise every kv v1 read would register a lease.
func keepsLease(e *mountEntry, snapshotRead bool) bool {
	if e.Plugin != "kv" {
		return true
	}
	return e.Options["leased_passthrough"] == "true" && !snapshotRead
}

func leasesKey(e *mountEntry) string { return "leases/" + e.UUID }

// countLeases keeps the number of leases a mount's plugin issued that were
// not revoked yet: Vault revokes every lease through the plugin (on expiry
// too), so the count is exact while the mount lives. It is counted in memory
// and written behind, within leaseFlushDelay: a plugin that issues a lease
// per read must not pay a storage write per read.
func (h *host) countLeases(ctx context.Context, hm *hostedMount, op logical.Operation, issued bool) {
	delta := 0
	switch {
	case op == logical.RevokeOperation:
		delta = -1
	case issued && op != logical.RenewOperation:
		delta = 1
	}
	if delta == 0 {
		return
	}
	e := hm.current()
	hm.leaseMu.Lock()
	defer hm.leaseMu.Unlock()
	if !hm.leasesLoaded {
		n, err := h.storedLeases(ctx, e)
		if err != nil {
			h.logger.Error("reading the lease count of a hosted mount", "mount", e.Name, "error", err)
			return
		}
		hm.leaseCount, hm.leasesLoaded = n, true
	}
	if hm.leaseCount += delta; hm.leaseCount < 0 {
		hm.leaseCount = 0
	}
	if !hm.leaseFlushPending {
		hm.leaseFlushPending = true
		time.AfterFunc(leaseFlushDelay, func() { h.flushLeases(context.Background(), hm) })
	}
}

const leaseFlushDelay = time.Second

// flushLeases writes a mount's lease count when it changed since the last
// write.
func (h *host) flushLeases(ctx context.Context, hm *hostedMount) error {
	e := hm.current()
	hm.leaseMu.Lock()
	defer hm.leaseMu.Unlock()
	if !hm.leaseFlushPending {
		return nil
	}
	se, err := logical.StorageEntryJSON(leasesKey(e), hm.leaseCount)
	if err == nil {
		err = h.storage.Put(ctx, se)
	}
	if err != nil {
		h.logger.Error("writing the lease count of a hosted mount", "mount", e.Name, "error", err)
		return err
	}
	hm.leaseFlushPending = false
	return nil
}

// leases is the number of leases of a mount still out.
func (h *host) leases(ctx context.Context, e *mountEntry) (int, error) {
	hm := h.mount(e)
	if err := h.flushLeases(ctx, hm); err != nil {
		return 0, err
	}
	return h.storedLeases(ctx, e)
}

func (h *host) storedLeases(ctx context.Context, e *mountEntry) (int, error) {
	se, err := h.storage.Get(ctx, leasesKey(e))
	if err != nil || se == nil {
		return 0, err
	}
	var n int
	return n, se.DecodeJSON(&n)
}
