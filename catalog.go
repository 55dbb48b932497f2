package runtimecatalog

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/viewcache"
)

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
	// kind is the mount's: which registered plugins its hosted mounts run.
	kind mountKind
	// hostedCache is the read-through cache of the hosted mounts' storage
	// views (hostStore.Data), coherent because every write to them passes
	// through those views, and Vault's Invalidate through invalidate.
	hostedCache *viewcache.Cache

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

func newCatalog(s logical.Storage) *catalog { return newCatalogOf(s, kindOf(nil)) }

// newCatalogOf is the catalog of a mount of kind k.
func newCatalogOf(s logical.Storage, k mountKind) *catalog {
	return &catalog{
		storage: s, kind: k, hostedCache: viewcache.New(hostedCacheBytes), stale: map[string]struct{}{},
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
	if name, ok := mountOfKey(key); ok {
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
	if strings.HasPrefix(key, leasesPrefix) || strings.HasPrefix(key, hostedDataPrefix) {
		return // the host's, read afresh each time: no index entry to refresh
	}
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
