package runtimecatalog

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// Storage layout. Each entry is versioned JSON: format is bumped when the
// layout changes, so an older plugin refuses an entry it cannot read rather
// than silently dropping fields.
const (
	runtimeStoragePrefix = "runtime/" + runtimeTypeContainer + "/" // + name
	pluginStoragePrefix  = "plugin/"                               // + type/name
	mountStoragePrefix   = "mount/"                                // + name
	hostedDataPrefix     = "hosted/"                               // + uuid/: each hosted mount's own storage
	runtimeEntryFormat   = 1
	pluginEntryFormat    = 1
	mountEntryFormat     = 1
	settingsKey          = "config"
	settingsFormat       = 1
	registryPrefix       = "registry/" // + registry address: its credentials
	registryEntryFormat  = 1
)

// settingsEntry is the mount's own configuration.
type settingsEntry struct {
	// CompressLists lets lists answer with a gzip body to clients that ask
	// for one (Accept-Encoding), which the mount must pass through, and let
	// the Content-Encoding header back out of.
	CompressLists bool `json:"compress_lists"`
}

type storedSettings struct {
	Format int `json:"format"`
	*settingsEntry
}

func runtimeKey(name string) string    { return runtimeStoragePrefix + name }
func pluginKey(id pluginID) string     { return pluginStoragePrefix + id.String() }
func pluginTypePrefix(t string) string { return pluginStoragePrefix + t + "/" }
func mountKey(name string) string      { return mountStoragePrefix + name }

type storedRegistry struct {
	Format int `json:"format"`
	*registryEntry
}

type storedRuntime struct {
	Format int `json:"format"`
	*runtimeEntry
}

type storedPlugin struct {
	Format int `json:"format"`
	*pluginEntry
}

type storedMount struct {
	Format int `json:"format"`
	*mountEntry
}

// catalog owns the mount's runtimes, plugins and hosted mounts: their
// storage keys and codecs, the in-memory index that serves reads and lists,
// the locks that order writes, and the rules between them (a runtime in use
// cannot be deleted; a plugin cannot reference a runtime that does not
// exist; a plugin hosted by a mount cannot be deleted; a mount hosts only a
// registered secret plugin). Every read and write of that state goes through
// it; what runs is the host's.
//
// The index saves every read a storage round trip (a gRPC call back into
// Vault for an external plugin). It is loaded on first use, updated by every
// write after storage accepted it, and refreshed key by key when Vault
// invalidates keys (replicated clusters, where another node wrote them).
// Entries are never modified in place: a write stores a new pointer, so a
// caller may keep an entry after the lock is released.
type catalog struct {
	storage logical.Storage

	mu       sync.RWMutex
	loaded   bool
	stale    map[string]struct{} // storage keys invalidated since loading
	runtimes map[string]*runtimeEntry
	plugins  map[pluginID]*pluginEntry
	users    map[string]map[pluginID]struct{} // runtime name -> plugins using it
	mounts   map[string]*mountEntry
	settings settingsEntry
	// Sorted views, nil after a change.
	runtimesSorted []*runtimeEntry
	pluginsSorted  []*pluginEntry
	// generation counts changes, so what is derived from the catalog (an
	// encoded list) can be kept until the next one.
	generation uint64

	// runtimeLocks serialise the writes to one runtime name, so a write is
	// checked and applied without another write to the same name between.
	// pluginLocks do the same for plugins. Separate sets: a plugin write holds
	// its plugin lock and then a runtime lock, and shared stripes could make
	// two such writes wait on each other.
	// mountLocks order the writes to one hosted mount; a mount write takes
	// its mount lock, then its plugin's lock.
	runtimeLocks []*locksutil.LockEntry
	pluginLocks  []*locksutil.LockEntry
	mountLocks   []*locksutil.LockEntry
}

func newCatalog(s logical.Storage) *catalog {
	return &catalog{
		storage: s, stale: map[string]struct{}{},
		runtimeLocks: locksutil.CreateLocks(), pluginLocks: locksutil.CreateLocks(), mountLocks: locksutil.CreateLocks(),
	}
}

// ensure loads the index, or refreshes invalidated keys, when needed.
func (c *catalog) ensure(ctx context.Context) error {
	c.mu.RLock()
	ready := c.loaded && len(c.stale) == 0
	c.mu.RUnlock()
	if ready {
		return nil
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.loaded {
		return c.loadLocked(ctx)
	}
	for key := range c.stale {
		if err := c.refreshLocked(ctx, key); err != nil {
			return err
		}
		delete(c.stale, key)
	}
	return nil
}

// loadConcurrency is how many storage reads loading runs at once. For an
// external plugin each read is a gRPC call back into Vault: one at a time,
// 10,000 runtimes took 2.7 s to load here.
const loadConcurrency = 16

func (c *catalog) loadLocked(ctx context.Context) error {
	runtimeKeys, err := listKeysUnder(ctx, c.storage, runtimeStoragePrefix)
	if err != nil {
		return fmt.Errorf("listing runtimes: %w", err)
	}
	var pluginKeys []string
	for _, pluginType := range pluginTypes {
		keys, err := listKeysUnder(ctx, c.storage, pluginTypePrefix(pluginType))
		if err != nil {
			return fmt.Errorf("listing plugins: %w", err)
		}
		pluginKeys = append(pluginKeys, keys...)
	}
	mountKeys, err := listKeysUnder(ctx, c.storage, mountStoragePrefix)
	if err != nil {
		return fmt.Errorf("listing hosted mounts: %w", err)
	}
	entries, err := getAll(ctx, c.storage, append(append(runtimeKeys, pluginKeys...), mountKeys...))
	if err != nil {
		return err
	}
	if c.settings, err = decodeSettings(c.storage.Get(ctx, settingsKey)); err != nil {
		return err
	}

	c.runtimes = make(map[string]*runtimeEntry, len(runtimeKeys))
	c.plugins, c.users = map[pluginID]*pluginEntry{}, map[string]map[pluginID]struct{}{}
	c.mounts = map[string]*mountEntry{}
	for i, se := range entries {
		if i >= len(runtimeKeys)+len(pluginKeys) {
			m, err := decodeMount(se, nil)
			if err != nil {
				return err
			}
			if m != nil {
				c.mounts[m.Name] = m
			}
			continue
		}
		if i < len(runtimeKeys) {
			r, err := decodeRuntime(se, nil)
			if err != nil {
				return err
			}
			if r != nil {
				c.runtimes[r.Name] = r
			}
			continue
		}
		p, err := decodePlugin(se, nil)
		if err != nil {
			return err
		}
		if p != nil {
			c.setPluginLocked(p)
		}
	}
	c.changedLocked()
	c.stale = map[string]struct{}{}
	c.loaded = true
	return nil
}

// listKeysUnder returns the full keys of the entries directly under prefix.
func listKeysUnder(ctx context.Context, s logical.Storage, prefix string) ([]string, error) {
	names, err := s.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(names))
	for _, name := range names {
		if !strings.HasSuffix(name, "/") {
			keys = append(keys, prefix+name)
		}
	}
	return keys, nil
}

// getAll reads keys with loadConcurrency reads at once; entries[i] is keys[i]
// (nil if it vanished meanwhile).
func getAll(ctx context.Context, s logical.Storage, keys []string) ([]*logical.StorageEntry, error) {
	entries := make([]*logical.StorageEntry, len(keys))
	errs := make([]error, len(keys))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < loadConcurrency && w < len(keys); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				entries[i], errs[i] = s.Get(ctx, keys[i])
			}
		}()
	}
	for i := range keys {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", keys[i], err)
		}
	}
	return entries, nil
}

// refreshLocked re-reads one storage key into the index.
func (c *catalog) refreshLocked(ctx context.Context, key string) error {
	if rest, ok := strings.CutPrefix(key, pluginStoragePrefix); ok {
		pluginType, name, _ := strings.Cut(rest, "/")
		p, err := decodePlugin(c.storage.Get(ctx, key))
		if err != nil {
			return err
		}
		if p == nil {
			c.removePluginLocked(pluginID{pluginType, name})
		} else {
			c.setPluginLocked(p)
		}
		return nil
	}
	if key == settingsKey {
		settings, err := decodeSettings(c.storage.Get(ctx, key))
		if err == nil {
			c.settings = settings
		}
		return err
	}
	if name, ok := strings.CutPrefix(key, mountStoragePrefix); ok {
		m, err := decodeMount(c.storage.Get(ctx, key))
		if err != nil {
			return err
		}
		if m == nil {
			delete(c.mounts, name)
		} else {
			c.mounts[name] = m
		}
		c.changedLocked()
		return nil
	}
	name, ok := strings.CutPrefix(key, runtimeStoragePrefix)
	if !ok {
		return nil // not a key the catalog holds
	}
	r, err := decodeRuntime(c.storage.Get(ctx, key))
	if err != nil {
		return err
	}
	if r == nil {
		delete(c.runtimes, name)
	} else {
		c.runtimes[name] = r
	}
	c.changedLocked()
	return nil
}

// invalidate marks a storage key as changed elsewhere; the next access
// re-reads it.
func (c *catalog) invalidate(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loaded {
		c.stale[key] = struct{}{}
	}
}

// changedLocked drops what is derived from the catalog after a change.
func (c *catalog) changedLocked() {
	c.runtimesSorted, c.pluginsSorted = nil, nil
	c.generation++
}

// Runtime returns the named runtime, nil when there is none.
func (c *catalog) Runtime(ctx context.Context, name string) (*runtimeEntry, error) {
	if err := c.ensure(ctx); err != nil {
		return nil, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.runtimes[name], nil
}

// Runtimes returns every runtime by name and the generation they are of.
// The slice is shared: callers must not modify it.
func (c *catalog) Runtimes(ctx context.Context) ([]*runtimeEntry, uint64, error) {
	if err := c.ensure(ctx); err != nil {
		return nil, 0, err
	}
	c.mu.RLock()
	sorted, gen := c.runtimesSorted, c.generation
	c.mu.RUnlock()
	if sorted != nil {
		return sorted, gen, nil
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.runtimesSorted == nil {
		c.runtimesSorted = make([]*runtimeEntry, 0, len(c.runtimes))
		for _, r := range c.runtimes {
			c.runtimesSorted = append(c.runtimesSorted, r)
		}
		sort.Slice(c.runtimesSorted, func(i, j int) bool { return c.runtimesSorted[i].Name < c.runtimesSorted[j].Name })
	}
	return c.runtimesSorted, c.generation, nil
}

// PluginsUsing returns the plugins that reference a runtime, sorted by
// name, then type.
func (c *catalog) PluginsUsing(ctx context.Context, runtimeName string) ([]pluginID, error) {
	if err := c.ensure(ctx); err != nil {
		return nil, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.usersLocked(runtimeName), nil
}

func (c *catalog) usersLocked(runtimeName string) []pluginID {
	ids := make([]pluginID, 0, len(c.users[runtimeName]))
	for id := range c.users[runtimeName] {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		if ids[i].Name != ids[j].Name {
			return ids[i].Name < ids[j].Name
		}
		return ids[i].Type < ids[j].Type
	})
	return ids
}

// Plugin returns the identified plugin, nil when there is none.
func (c *catalog) Plugin(ctx context.Context, id pluginID) (*pluginEntry, error) {
	if err := c.ensure(ctx); err != nil {
		return nil, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.plugins[id], nil
}

// Plugins returns every plugin, sorted by type and name. The slice is
// shared: callers must not modify it.
func (c *catalog) Plugins(ctx context.Context) ([]*pluginEntry, error) {
	if err := c.ensure(ctx); err != nil {
		return nil, err
	}
	c.mu.RLock()
	sorted := c.pluginsSorted
	c.mu.RUnlock()
	if sorted != nil {
		return sorted, nil
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pluginsSorted == nil {
		c.pluginsSorted = make([]*pluginEntry, 0, len(c.plugins))
		for _, p := range c.plugins {
			c.pluginsSorted = append(c.pluginsSorted, p)
		}
		sort.Slice(c.pluginsSorted, func(i, j int) bool {
			return c.pluginsSorted[i].id().String() < c.pluginsSorted[j].id().String()
		})
	}
	return c.pluginsSorted, nil
}

// ToRun is a plugin and its runtime as they are now, as the runtime package
// runs them: a runtime edited since registration applies at the next start.
// A missing plugin is a 404.
func (c *catalog) ToRun(ctx context.Context, id pluginID) (runtime.Plugin, runtime.Runtime, error) {
	if err := c.ensure(ctx); err != nil {
		return runtime.Plugin{}, runtime.Runtime{}, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	p := c.plugins[id]
	if p == nil {
		return runtime.Plugin{}, runtime.Runtime{}, logical.CodedError(http.StatusNotFound, "no plugin "+id.String())
	}
	if p.Runtime == "" {
		return p.Plugin, runtime.Runtime{}, nil
	}
	r := c.runtimes[p.Runtime]
	if r == nil { // writes forbid it; only storage edited behind the plugin's back gets here
		return runtime.Plugin{}, runtime.Runtime{}, fmt.Errorf("plugin %s references runtime %q, which does not exist", id, p.Runtime)
	}
	return p.Plugin, r.Runtime, nil
}

// WriteRuntime validates and stores the runtime that build derives from the
// current one (nil when there is none), holding the name's lock throughout
// so no other write to the name comes between. A runtime that breaks a rule
// is a request error and changes nothing.
func (c *catalog) WriteRuntime(ctx context.Context, name string, build func(existing *runtimeEntry) (*runtimeEntry, error)) (*runtimeEntry, error) {
	lock := locksutil.LockForKey(c.runtimeLocks, name)
	lock.Lock()
	defer lock.Unlock()

	existing, err := c.Runtime(ctx, name)
	if err != nil {
		return nil, err
	}
	r, err := build(existing)
	if err != nil {
		return nil, err
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	se, err := logical.StorageEntryJSON(runtimeKey(r.Name), storedRuntime{runtimeEntryFormat, r})
	if err != nil {
		return nil, fmt.Errorf("encoding runtime %q: %w", r.Name, err)
	}
	if err := c.storage.Put(ctx, se); err != nil {
		return nil, fmt.Errorf("storing runtime %q: %w", r.Name, err)
	}
	c.mu.Lock()
	c.runtimes[r.Name] = r
	c.changedLocked()
	c.mu.Unlock()
	return r, nil
}

// DeleteRuntime removes a runtime; deleting one that is not there succeeds.
// A runtime that plugins reference is not deleted: the error names them.
func (c *catalog) DeleteRuntime(ctx context.Context, name string) error {
	lock := locksutil.LockForKey(c.runtimeLocks, name)
	lock.Lock()
	defer lock.Unlock()

	if err := c.ensure(ctx); err != nil {
		return err
	}
	c.mu.RLock()
	exists, users := c.runtimes[name] != nil, c.usersLocked(name)
	c.mu.RUnlock()
	if !exists {
		return nil
	}
	// Plugin writes hold this runtime's lock too, so the users seen here are
	// all there are until the runtime is gone.
	if len(users) > 0 {
		return badRequestf("unable to delete %q runtime. Registered plugins=%v are referencing it.", name, users)
	}
	if err := c.storage.Delete(ctx, runtimeKey(name)); err != nil {
		return fmt.Errorf("deleting runtime %q: %w", name, err)
	}
	c.mu.Lock()
	delete(c.runtimes, name)
	c.changedLocked()
	c.mu.Unlock()
	return nil
}

// WritePlugin validates and stores the plugin that build derives from the
// current one (nil when there is none). It holds the plugin's lock, and the
// lock of the runtime it references while checking that the runtime exists
// and storing: a runtime deletion takes that lock too, so no plugin can come
// to reference a runtime that is being deleted. Locks are always taken
// plugin first, then runtime; runtime writers never take a plugin lock.
func (c *catalog) WritePlugin(ctx context.Context, id pluginID, build func(existing *pluginEntry) (*pluginEntry, error)) (*pluginEntry, error) {
	lock := locksutil.LockForKey(c.pluginLocks, id.String())
	lock.Lock()
	defer lock.Unlock()

	existing, err := c.Plugin(ctx, id)
	if err != nil {
		return nil, err
	}
	p, err := build(existing)
	if err != nil {
		return nil, err
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	if p.Runtime != "" {
		runtimeLock := locksutil.LockForKey(c.runtimeLocks, p.Runtime)
		runtimeLock.Lock()
		defer runtimeLock.Unlock()
		if r, err := c.Runtime(ctx, p.Runtime); err != nil {
			return nil, err
		} else if r == nil {
			return nil, badRequestf("plugin runtime %q does not exist", p.Runtime)
		}
	}
	se, err := logical.StorageEntryJSON(pluginKey(id), storedPlugin{pluginEntryFormat, p})
	if err != nil {
		return nil, fmt.Errorf("encoding plugin %q: %w", id, err)
	}
	if err := c.storage.Put(ctx, se); err != nil {
		return nil, fmt.Errorf("storing plugin %q: %w", id, err)
	}
	c.mu.Lock()
	c.setPluginLocked(p)
	c.mu.Unlock()
	return p, nil
}

// DeletePlugin removes a plugin; deleting one that is not there succeeds.
func (c *catalog) DeletePlugin(ctx context.Context, id pluginID) error {
	lock := locksutil.LockForKey(c.pluginLocks, id.String())
	lock.Lock()
	defer lock.Unlock()

	if p, err := c.Plugin(ctx, id); err != nil || p == nil {
		return err
	}
	// Mount writes hold this plugin's lock too, so the mounts seen here are
	// all there are until the plugin is gone.
	if users := c.mountsOf(id); len(users) > 0 {
		return badRequestf("unable to delete plugin %s. Hosted mounts=%v are using it.", id, users)
	}
	if err := c.storage.Delete(ctx, pluginKey(id)); err != nil {
		return fmt.Errorf("deleting plugin %q: %w", id, err)
	}
	c.mu.Lock()
	c.removePluginLocked(id)
	c.mu.Unlock()
	return nil
}

func (c *catalog) setPluginLocked(p *pluginEntry) {
	id := p.id()
	c.removePluginLocked(id)
	c.plugins[id] = p
	if p.Runtime != "" {
		if c.users[p.Runtime] == nil {
			c.users[p.Runtime] = map[pluginID]struct{}{}
		}
		c.users[p.Runtime][id] = struct{}{}
	}
	c.changedLocked()
}

func (c *catalog) removePluginLocked(id pluginID) {
	old := c.plugins[id]
	if old == nil {
		return
	}
	delete(c.plugins, id)
	if users := c.users[old.Runtime]; users != nil {
		delete(users, id)
		if len(users) == 0 {
			delete(c.users, old.Runtime)
		}
	}
	c.changedLocked()
}

// mountsOf returns the names of the hosted mounts of a plugin, sorted.
func (c *catalog) mountsOf(id pluginID) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var names []string
	for _, m := range c.mounts {
		if m.pluginID() == id {
			names = append(names, m.Name)
		}
	}
	sort.Strings(names)
	return names
}

// Mount returns the named hosted mount, nil when there is none.
func (c *catalog) Mount(ctx context.Context, name string) (*mountEntry, error) {
	if err := c.ensure(ctx); err != nil {
		return nil, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.mounts[name], nil
}

// Mounts returns every hosted mount, sorted by name.
func (c *catalog) Mounts(ctx context.Context) ([]*mountEntry, error) {
	if err := c.ensure(ctx); err != nil {
		return nil, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	mounts := make([]*mountEntry, 0, len(c.mounts))
	for _, m := range c.mounts {
		mounts = append(mounts, m)
	}
	sort.Slice(mounts, func(i, j int) bool { return mounts[i].Name < mounts[j].Name })
	return mounts, nil
}

// WriteMount validates the hosted mount that build derives from the current
// one (nil when there is none), has start run it, and stores it only when it
// started: a mount that cannot start is refused and nothing is stored. The
// plugin's lock is held throughout, so the plugin cannot be deleted while it
// comes to be hosted.
func (c *catalog) WriteMount(ctx context.Context, name string, build func(existing *mountEntry) (*mountEntry, error),
	start func(m, existing *mountEntry) error,
) (*mountEntry, error) {
	lock := locksutil.LockForKey(c.mountLocks, name)
	lock.Lock()
	defer lock.Unlock()

	existing, err := c.Mount(ctx, name)
	if err != nil {
		return nil, err
	}
	m, err := build(existing)
	if err != nil {
		return nil, err
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	pluginLock := locksutil.LockForKey(c.pluginLocks, m.pluginID().String())
	pluginLock.Lock()
	defer pluginLock.Unlock()
	if p, err := c.Plugin(ctx, m.pluginID()); err != nil {
		return nil, err
	} else if p == nil {
		for _, other := range []string{"auth", "database"} {
			if q, _ := c.Plugin(ctx, pluginID{other, m.Plugin}); q != nil {
				return nil, badRequestf("plugin %q is registered as %s, not secret: only secret plugins can be hosted, "+
					"since this mount is a secrets engine (Vault refuses auth from it, and database plugins speak another protocol)", m.Plugin, other)
			}
		}
		return nil, badRequestf("no secret plugin %q is registered: register it at plugins/catalog/secret/%s", m.Plugin, m.Plugin)
	}
	if err := start(m, existing); err != nil {
		return nil, err
	}
	se, err := logical.StorageEntryJSON(mountKey(name), storedMount{mountEntryFormat, m})
	if err != nil {
		return nil, fmt.Errorf("encoding hosted mount %q: %w", name, err)
	}
	if err := c.storage.Put(ctx, se); err != nil {
		return nil, fmt.Errorf("storing hosted mount %q: %w", name, err)
	}
	c.mu.Lock()
	c.mounts[name] = m
	c.changedLocked()
	c.mu.Unlock()
	return m, nil
}

// DeleteMount removes a hosted mount after stop has stopped it and cleared
// its data; deleting one that is not there succeeds. A stop that refuses
// (leases still out) leaves the mount as it was.
func (c *catalog) DeleteMount(ctx context.Context, name string, stop func(*mountEntry) error) error {
	lock := locksutil.LockForKey(c.mountLocks, name)
	lock.Lock()
	defer lock.Unlock()

	m, err := c.Mount(ctx, name)
	if err != nil || m == nil {
		return err
	}
	if err := stop(m); err != nil {
		return err
	}
	if err := c.storage.Delete(ctx, mountKey(name)); err != nil {
		return fmt.Errorf("deleting hosted mount %q: %w", name, err)
	}
	c.mu.Lock()
	delete(c.mounts, name)
	c.changedLocked()
	c.mu.Unlock()
	return nil
}

// Settings are the mount's configuration.
func (c *catalog) Settings(ctx context.Context) (settingsEntry, error) {
	if err := c.ensure(ctx); err != nil {
		return settingsEntry{}, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.settings, nil
}

// WriteSettings stores the mount's configuration.
func (c *catalog) WriteSettings(ctx context.Context, settings settingsEntry) error {
	if err := c.ensure(ctx); err != nil {
		return err
	}
	se, err := logical.StorageEntryJSON(settingsKey, storedSettings{settingsFormat, &settings})
	if err == nil {
		err = c.storage.Put(ctx, se)
	}
	if err != nil {
		return fmt.Errorf("storing the configuration: %w", err)
	}
	c.mu.Lock()
	c.settings = settings
	c.mu.Unlock()
	return nil
}

// Registry is the credentials stored for a registry, or nil. They are read
// from storage each time: a pull is rare, and a secret kept in memory only
// when needed is a secret less often in a core dump.
func (c *catalog) Registry(ctx context.Context, registry string) (*registryEntry, error) {
	stored := storedRegistry{registryEntry: &registryEntry{}}
	se, err := c.storage.Get(ctx, registryPrefix+registry)
	if ok, err := decodeStored(se, err, "registry credentials", &stored, &stored.Format, registryEntryFormat); !ok {
		return nil, err
	}
	return stored.registryEntry, nil
}

// Registries are the registries credentials are stored for, sorted.
func (c *catalog) Registries(ctx context.Context) ([]string, error) {
	keys, err := c.storage.List(ctx, registryPrefix)
	if err != nil {
		return nil, fmt.Errorf("listing registries: %w", err)
	}
	sort.Strings(keys)
	return keys, nil
}

// WriteRegistry validates and stores a registry's credentials.
func (c *catalog) WriteRegistry(ctx context.Context, r *registryEntry) error {
	if err := r.validate(); err != nil {
		return err
	}
	se, err := logical.StorageEntryJSON(registryPrefix+r.Registry, storedRegistry{registryEntryFormat, r})
	if err == nil {
		err = c.storage.Put(ctx, se)
	}
	if err != nil {
		return fmt.Errorf("storing the credentials of registry %s: %w", r.Registry, err)
	}
	return nil
}

// DeleteRegistry removes a registry's credentials.
func (c *catalog) DeleteRegistry(ctx context.Context, registry string) error {
	return c.storage.Delete(ctx, registryPrefix+registry)
}

func decodeSettings(se *logical.StorageEntry, err error) (settingsEntry, error) {
	stored := storedSettings{settingsEntry: &settingsEntry{}}
	if ok, err := decodeStored(se, err, "configuration", &stored, &stored.Format, settingsFormat); !ok {
		return settingsEntry{}, err
	}
	return *stored.settingsEntry, nil
}

func decodeMount(se *logical.StorageEntry, err error) (*mountEntry, error) {
	stored := storedMount{mountEntry: &mountEntry{}}
	if ok, err := decodeStored(se, err, "hosted mount", &stored, &stored.Format, mountEntryFormat); !ok {
		return nil, err
	}
	return stored.mountEntry, nil
}

func decodeRuntime(se *logical.StorageEntry, err error) (*runtimeEntry, error) {
	stored := storedRuntime{runtimeEntry: &runtimeEntry{}}
	if ok, err := decodeStored(se, err, "runtime", &stored, &stored.Format, runtimeEntryFormat); !ok {
		return nil, err
	}
	return stored.runtimeEntry, nil
}

func decodePlugin(se *logical.StorageEntry, err error) (*pluginEntry, error) {
	stored := storedPlugin{pluginEntry: &pluginEntry{}}
	if ok, err := decodeStored(se, err, "plugin", &stored, &stored.Format, pluginEntryFormat); !ok {
		return nil, err
	}
	return stored.pluginEntry, nil
}

// decodeStored decodes a storage entry into v, whose format field is
// format; ok is false when there is no entry or it cannot be read.
func decodeStored(se *logical.StorageEntry, readErr error, kind string, v interface{}, format *int, want int) (ok bool, err error) {
	if readErr != nil {
		return false, fmt.Errorf("reading %s: %w", kind, readErr)
	}
	if se == nil {
		return false, nil
	}
	if err := json.Unmarshal(se.Value, v); err != nil {
		return false, fmt.Errorf("decoding %s %q: %w", kind, se.Key, err)
	}
	if *format != want {
		return false, fmt.Errorf("%s %q is stored in format %d; this plugin reads format %d", kind, se.Key, *format, want)
	}
	return true, nil
}
