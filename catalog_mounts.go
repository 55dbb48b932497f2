package runtimecatalog

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/hosting"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/reqerr"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// mountsOf returns the names of the hosted mounts of a plugin, sorted.
func (c *catalog) mountsOf(id pluginID) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var names []string
	for _, m := range c.mounts {
		if c.hosted(m) == id {
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
	lock := c.mountLock(name)
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
	if err := m.validate(c.kind.pluginType); err != nil {
		return nil, err
	}
	if c.kind.hostsOne() {
		others, err := c.Mounts(ctx)
		if err != nil {
			return nil, err
		}
		for _, other := range others {
			if other.Name != name {
				return nil, c.kind.hostsOneOnly(other.Name, name)
			}
		}
	}
	id := c.hosted(m)
	pluginLock := locksutil.LockForKey(c.pluginLocks, id.String())
	pluginLock.Lock()
	defer pluginLock.Unlock()
	if p, err := c.Plugin(ctx, id); err != nil {
		return nil, err
	} else if p == nil {
		for _, other := range pluginTypes {
			if q, _ := c.Plugin(ctx, pluginID{other, m.Plugin}); q != nil {
				return nil, c.kind.hosts(other, m.Plugin)
			}
		}
		return nil, reqerr.BadRequestf("no %s plugin %q is registered: register it at plugins/catalog/%s", id.Type, m.Plugin, id)
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
// its data, and returns it; deleting one that is not there succeeds, and
// returns nil. A stop that refuses (leases still out) leaves the mount as it
// was.
func (c *catalog) DeleteMount(ctx context.Context, name string, stop func(*mountEntry) error) (*mountEntry, error) {
	lock := c.mountLock(name)
	lock.Lock()
	defer lock.Unlock()

	m, err := c.Mount(ctx, name)
	if err != nil || m == nil {
		return nil, err
	}
	if err := stop(m); err != nil {
		return nil, err
	}
	if err := c.storage.Delete(ctx, mountKey(name)); err != nil {
		return nil, fmt.Errorf("deleting hosted mount %q: %w", name, err)
	}
	c.mu.Lock()
	delete(c.mounts, name)
	c.changedLocked()
	c.mu.Unlock()
	return m, nil
}

// mountLock is the lock of the writes to hosted mount name. On a mount that
// hosts one (mountKind.hostsOne) every name has the same lock, so two
// writes of different names cannot both find no other and both store.
func (c *catalog) mountLock(name string) *locksutil.LockEntry {
	if c.kind.hostsOne() {
		name = ""
	}
	return locksutil.LockForKey(c.mountLocks, name)
}

// putMountPaths stores the special paths a hosted mount's plugin declares,
// when the mount stored under name is still the one of uuid. A new entry
// replaces the old: entries are never modified in place.
func (c *catalog) putMountPaths(ctx context.Context, name, uuid string, paths hosting.Paths) error {
	lock := c.mountLock(name)
	lock.Lock()
	defer lock.Unlock()
	m, err := c.Mount(ctx, name)
	if err != nil || m == nil || m.UUID != uuid || m.Paths.Equal(paths) {
		return err // gone, another mount now, or stored already (by the write that started it)
	}
	updated := *m
	updated.Paths = paths
	se, err := logical.StorageEntryJSON(mountKey(name), storedMount{mountEntryFormat, &updated})
	if err != nil {
		return fmt.Errorf("encoding hosted mount %q: %w", name, err)
	}
	if err := c.storage.Put(ctx, se); err != nil {
		return fmt.Errorf("storing hosted mount %q: %w", name, err)
	}
	c.mu.Lock()
	c.mounts[name] = &updated
	c.changedLocked()
	c.mu.Unlock()
	return nil
}

// hostStore is the catalog as the host's store: the hosted mounts, their
// plugins to run, and the storage the host needs (each mount's own data
// view and lease count), under keys the catalog owns (storage.go).
type hostStore struct{ c *catalog }

var _ hosting.Store = hostStore{}

func (s hostStore) Mount(ctx context.Context, name string) (*hosting.Mount, error) {
	m, err := s.c.Mount(ctx, name)
	if m == nil {
		return nil, err
	}
	return &m.Mount, nil
}

func (s hostStore) Mounts(ctx context.Context) ([]*hosting.Mount, error) {
	entries, err := s.c.Mounts(ctx)
	return hostingMounts(entries), err
}

func hostingMounts(entries []*mountEntry) []*hosting.Mount {
	mounts := make([]*hosting.Mount, len(entries))
	for i, e := range entries {
		mounts[i] = &e.Mount
	}
	return mounts
}

func (s hostStore) ToRun(ctx context.Context, plugin string) (runtime.Plugin, runtime.Runtime, error) {
	return s.c.ToRun(ctx, pluginID{Type: s.c.kind.pluginType, Name: plugin})
}

// Data is the mount's view, read through the catalog's cache unless the
// configuration turns it off (at the mount's next start). Turned off, its
// writes still drop their keys from the cache: a cached view of the same
// mount may live on beside it (an earlier backend finishing a request,
// the setting turned on again) and must never answer an older value.
// Settings come from the catalog's index, which the start's ToRun loaded.
func (s hostStore) Data(uuid string) logical.Storage {
	view := logical.NewStorageView(s.c.storage, hostedData(uuid))
	if settings, err := s.c.Settings(context.Background()); err != nil || settings.DisableHostedStorageCache {
		return s.c.hostedCache.Uncached(uuid, view)
	}
	return s.c.hostedCache.View(uuid, view)
}

func (s hostStore) Leases(ctx context.Context, uuid string) (int, error) {
	se, err := s.c.storage.Get(ctx, leasesKey(uuid))
	if err != nil || se == nil {
		return 0, err
	}
	var n int
	return n, se.DecodeJSON(&n)
}

func (s hostStore) PutLeases(ctx context.Context, uuid string, n int) error {
	se, err := logical.StorageEntryJSON(leasesKey(uuid), n)
	if err == nil {
		err = s.c.storage.Put(ctx, se)
	}
	return err
}

func (s hostStore) PutPaths(ctx context.Context, name, uuid string, paths hosting.Paths) error {
	return s.c.putMountPaths(ctx, name, uuid, paths)
}

func (s hostStore) Published(ctx context.Context) (map[string]string, error) {
	se, err := s.c.storage.Get(ctx, publishedPathsKey)
	stored := storedPublished{}
	if ok, err := decodeStored(se, err, "published special paths", &stored, &stored.Format, publishedPathsFormat); !ok {
		return nil, err
	}
	if stored.ByName == nil {
		stored.ByName = map[string]string{}
	}
	return stored.ByName, nil
}

func (s hostStore) PutPublished(ctx context.Context, byName map[string]string) error {
	if byName == nil {
		return s.c.storage.Delete(ctx, publishedPathsKey)
	}
	se, err := logical.StorageEntryJSON(publishedPathsKey, storedPublished{Format: publishedPathsFormat, ByName: byName})
	if err == nil {
		err = s.c.storage.Put(ctx, se)
	}
	return err
}

func (s hostStore) Clear(ctx context.Context, uuid string) error {
	err := logical.ClearView(ctx, s.Data(uuid))
	s.c.hostedCache.Drop(uuid) // a removed mount keeps nothing in memory either
	if err != nil {
		return err
	}
	return s.c.storage.Delete(ctx, leasesKey(uuid))
}

// hostedKey splits a storage key of a hosted mount's data into the mount's
// UUID and the key within its view.
func hostedKey(key string) (uuid, rest string, ok bool) {
	after, ok := strings.CutPrefix(key, hostedDataPrefix)
	if !ok {
		return "", "", false
	}
	uuid, rest, _ = strings.Cut(after, "/")
	return uuid, rest, true
}
