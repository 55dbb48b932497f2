package runtimecatalog

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/hashicorp/vault/sdk/logical"
)

// catalogIndex holds every runtime and plugin of the mount in memory, so reads and lists
// cost no storage round trip (each is a gRPC call back into Vault for an
// external plugin). It is loaded from storage on first use, updated by every
// write after storage accepted it, and refreshed key by key when Vault
// invalidates keys (replicated clusters, where another node wrote them).
//
// Entries are never modified in place: a write stores a new pointer, so a
// reader may keep an entry after releasing the lock.
type catalogIndex struct {
	mu       sync.RWMutex
	loaded   bool
	stale    map[string]struct{} // storage keys invalidated since loading
	runtimes map[string]*runtimeEntry
	sorted   []*runtimeEntry // runtimes by name; nil after a change
	listBody string          // the encoded list response (list_body.go); "" after a change
	changes  uint64          // counts runtime changes, so a body encoded meanwhile is not kept

	plugins       map[string]*pluginEntry        // by id, "type/name"
	sortedPlugins []*pluginEntry                 // by id; nil after a change
	users         map[string]map[string]struct{} // runtime name -> ids of the plugins using it
}

func newCatalogIndex() *catalogIndex {
	return &catalogIndex{stale: map[string]struct{}{}}
}

// ensure loads the index, or refreshes invalidated keys, when needed.
func (ix *catalogIndex) ensure(ctx context.Context, s logical.Storage) error {
	ix.mu.RLock()
	ready := ix.loaded && len(ix.stale) == 0
	ix.mu.RUnlock()
	if ready {
		return nil
	}

	ix.mu.Lock()
	defer ix.mu.Unlock()
	if !ix.loaded {
		return ix.loadLocked(ctx, s)
	}
	for key := range ix.stale {
		if err := ix.refreshLocked(ctx, s, key); err != nil {
			return err
		}
		delete(ix.stale, key)
	}
	return nil
}

// loadConcurrency is how many storage reads loading runs at once. For an
// external plugin each read is a gRPC call back into Vault: one at a time,
// 10,000 runtimes took 2.7 s to load here.
const loadConcurrency = 16

func (ix *catalogIndex) loadLocked(ctx context.Context, s logical.Storage) error {
	runtimeKeys, err := listKeysUnder(ctx, s, runtimeStoragePrefix+runtimeTypeContainer+"/")
	if err != nil {
		return fmt.Errorf("listing runtimes: %w", err)
	}
	var pluginKeys []string
	for _, pluginType := range pluginTypes {
		keys, err := listKeysUnder(ctx, s, pluginStoragePrefix+pluginType+"/")
		if err != nil {
			return fmt.Errorf("listing plugins: %w", err)
		}
		pluginKeys = append(pluginKeys, keys...)
	}
	entries, err := getAll(ctx, s, append(runtimeKeys, pluginKeys...))
	if err != nil {
		return err
	}

	ix.runtimes = make(map[string]*runtimeEntry, len(runtimeKeys))
	ix.plugins, ix.sortedPlugins, ix.users = map[string]*pluginEntry{}, nil, map[string]map[string]struct{}{}
	for i, se := range entries {
		if i < len(runtimeKeys) {
			r, err := decodeRuntime(se, nil)
			if err != nil {
				return err
			}
			if r != nil {
				ix.runtimes[r.Name] = r
			}
			continue
		}
		p, err := decodePlugin(se, nil)
		if err != nil {
			return err
		}
		if p != nil {
			ix.setPluginLocked(p)
		}
	}
	ix.changedLocked()
	ix.stale = map[string]struct{}{}
	ix.loaded = true
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
func (ix *catalogIndex) refreshLocked(ctx context.Context, s logical.Storage, key string) error {
	if id, ok := strings.CutPrefix(key, pluginStoragePrefix); ok {
		p, err := decodePlugin(s.Get(ctx, key))
		if err != nil {
			return err
		}
		if p == nil {
			ix.removePluginLocked(id)
		} else {
			ix.setPluginLocked(p)
		}
		return nil
	}
	rest, ok := strings.CutPrefix(key, runtimeStoragePrefix+runtimeTypeContainer+"/")
	if !ok {
		return nil // not a key the index holds
	}
	r, err := decodeRuntime(s.Get(ctx, key))
	if err != nil {
		return err
	}
	if r == nil {
		delete(ix.runtimes, rest)
	} else {
		ix.runtimes[rest] = r
	}
	ix.changedLocked()
	return nil
}

// invalidate marks a storage key as changed elsewhere; the next access
// re-reads it.
func (ix *catalogIndex) invalidate(key string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.loaded {
		ix.stale[key] = struct{}{}
	}
}

func (ix *catalogIndex) runtime(name string) *runtimeEntry {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.runtimes[name]
}

// sortedRuntimes returns all runtimes by name. The slice is shared: callers
// must not modify it.
func (ix *catalogIndex) sortedRuntimes() []*runtimeEntry {
	ix.mu.RLock()
	sorted := ix.sorted
	ix.mu.RUnlock()
	if sorted != nil {
		return sorted
	}

	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.sorted == nil {
		ix.sorted = make([]*runtimeEntry, 0, len(ix.runtimes))
		for _, r := range ix.runtimes {
			ix.sorted = append(ix.sorted, r)
		}
		sort.Slice(ix.sorted, func(i, j int) bool { return ix.sorted[i].Name < ix.sorted[j].Name })
	}
	return ix.sorted
}

// changedLocked drops what is derived from the runtimes after a change.
func (ix *catalogIndex) changedLocked() {
	ix.sorted, ix.listBody = nil, ""
	ix.changes++
}

// runtimeListBody returns the encoded list response, encoding it if a change
// made it stale. Encoding happens outside the lock, so reads go on meanwhile.
func (ix *catalogIndex) runtimeListBody() (string, error) {
	ix.mu.RLock()
	body, changes := ix.listBody, ix.changes
	ix.mu.RUnlock()
	if body != "" {
		return body, nil
	}
	body, err := encodeRuntimeList(ix.sortedRuntimes())
	if err != nil {
		return "", err
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.changes == changes { // no change came in while encoding
		ix.listBody = body
	}
	return body, nil
}

func (ix *catalogIndex) setRuntime(r *runtimeEntry) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.runtimes[r.Name] = r
	ix.changedLocked()
}

func (ix *catalogIndex) removeRuntime(name string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	delete(ix.runtimes, name)
	ix.changedLocked()
}

func (ix *catalogIndex) plugin(id string) *pluginEntry {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.plugins[id]
}

// pluginsSorted returns all plugins by id. The slice is shared: callers must
// not modify it.
func (ix *catalogIndex) pluginsSorted() []*pluginEntry {
	ix.mu.RLock()
	sorted := ix.sortedPlugins
	ix.mu.RUnlock()
	if sorted != nil {
		return sorted
	}

	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.sortedPlugins == nil {
		ix.sortedPlugins = make([]*pluginEntry, 0, len(ix.plugins))
		for _, p := range ix.plugins {
			ix.sortedPlugins = append(ix.sortedPlugins, p)
		}
		sort.Slice(ix.sortedPlugins, func(i, j int) bool { return ix.sortedPlugins[i].id() < ix.sortedPlugins[j].id() })
	}
	return ix.sortedPlugins
}

// pluginsUsing returns the ids of the plugins that reference a runtime,
// sorted by plugin name, then type.
func (ix *catalogIndex) pluginsUsing(runtime string) []string {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	users := make([]*pluginEntry, 0, len(ix.users[runtime]))
	for id := range ix.users[runtime] {
		users = append(users, ix.plugins[id])
	}
	sort.Slice(users, func(i, j int) bool {
		if users[i].Name != users[j].Name {
			return users[i].Name < users[j].Name
		}
		return users[i].Type < users[j].Type
	})
	ids := make([]string, len(users))
	for i, p := range users {
		ids[i] = p.id()
	}
	return ids
}

func (ix *catalogIndex) setPlugin(p *pluginEntry) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.setPluginLocked(p)
}

func (ix *catalogIndex) removePlugin(id string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.removePluginLocked(id)
}

func (ix *catalogIndex) setPluginLocked(p *pluginEntry) {
	ix.removePluginLocked(p.id())
	ix.plugins[p.id()] = p
	if p.Runtime != "" {
		if ix.users[p.Runtime] == nil {
			ix.users[p.Runtime] = map[string]struct{}{}
		}
		ix.users[p.Runtime][p.id()] = struct{}{}
	}
	ix.sortedPlugins = nil
}

func (ix *catalogIndex) removePluginLocked(id string) {
	old := ix.plugins[id]
	if old == nil {
		return
	}
	delete(ix.plugins, id)
	if users := ix.users[old.Runtime]; users != nil {
		delete(users, id)
		if len(users) == 0 {
			delete(ix.users, old.Runtime)
		}
	}
	ix.sortedPlugins = nil
}
