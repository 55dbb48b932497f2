// Package viewcache is a coherent, memory-bounded read-through cache of
// hosted mounts' storage views.
//
// A hosted plugin's storage calls cross two gRPC hops (hosted plugin to
// this process, this process to Vault), and most of its Gets ask for
// something asked before. The cache answers those Gets here.
//
// Why the cache is coherent, that is never serves a value older than the
// last write that completed:
//
//   - Every write to a hosted mount's view passes through this process:
//     the hosted plugin reaches its storage only through the view this
//     process hands it. The cached view's Put and Delete write to the
//     storage and then drop the key, so the next Get reads storage again.
//   - Writes made elsewhere, by another node of a Vault Enterprise cluster
//     (performance standbys, replication), reach this process as Vault's
//     Invalidate of the key, which the caller passes to Invalidate. Vault
//     calls it once the new value is in this node's storage, so a Get that
//     starts after it reads the new value, and a Get in flight across it
//     stores nothing.
//   - Vault CE runs a hosted plugin only on the active node, and a failover
//     starts a fresh plugin process on the new active node, with an empty
//     cache: there is no other writer it could miss.
//   - A Get whose read of storage overlapped a write of its key does not
//     store what it read (see fetch): it may have read the old value.
//
// Entries are keyed by mount UUID and key, least recently used evicted
// first, within a bound on their accounted bytes.
package viewcache

import (
	"container/list"
	"context"
	"sync"

	"github.com/hashicorp/vault/sdk/logical"
)

// entryOverhead estimates the bytes an entry costs besides its strings and
// value: its list.Element (48 B with size-class rounding), its entry struct
// (48 B), its slot in a mount's map with the table's slack (about 48 B) and
// the logical.StorageEntry (48 B), with some rounding to spare.
const entryOverhead = 208

// Cache holds the entries of every mount's view. The zero value is not
// usable: make one with New.
type Cache struct {
	maxBytes int64
	// maxEntry is the largest entry cached: a larger one would evict more
	// than a sixteenth of the cache to save a single read.
	maxEntry int64

	mu     sync.Mutex
	lru    list.List // of *entry, the most recently used at the front
	mounts map[string]*mount
	bytes  int64

	hits, misses, evictions uint64
}

// mount is one mount's part of the cache. It exists only while it has an
// entry or a Get in flight, so removed mounts leave nothing behind.
type mount struct {
	uuid    string
	entries map[string]*list.Element
	pending map[string]*fetch
}

// entry is a cached Get result; se nil is a cached absent key.
type entry struct {
	m    *mount
	key  string
	se   *logical.StorageEntry
	size int64
}

// fetch records the Gets of one key whose read of storage is in flight.
//
// gen is the key's generation: every drop of the key (Put, Delete,
// Invalidate, Drop) while a read is in flight bumps it, and a Get stores
// its result only if gen is what it was when its read began. A read that
// began before a write of the key completed may have read the old value;
// one that begins after the drop reads the new one, since the drop comes
// after the write.
//
// The generation is per key, not per mount, so that writes to one key do
// not keep every other key of a busy mount from being cached. It is kept
// only while a read of the key is in flight, not for every key ever
// written, so its memory is bounded by the Gets in flight: a key with no
// read in flight needs none, as any read of it starts after the drop.
type fetch struct {
	n   int    // Gets of the key in flight
	gen uint64 // bumped by every drop of the key while n > 0
}

// Stats are a cache's figures at one moment.
type Stats struct {
	Entries   int    // entries cached, absent keys included
	Bytes     int64  // accounted bytes of the entries
	MaxBytes  int64  // the bound on Bytes
	Hits      uint64 // Gets answered from the cache
	Misses    uint64 // Gets that read the storage
	Evictions uint64 // entries evicted to make room
}

// New makes a cache holding at most maxBytes of entries (keys, values and a
// fixed per-entry overhead estimate), least recently used evicted first.
// maxBytes <= 0 makes a disabled cache: View returns s itself.
func New(maxBytes int64) *Cache {
	if maxBytes <= 0 {
		return &Cache{}
	}
	return &Cache{maxBytes: maxBytes, maxEntry: maxBytes / 16, mounts: make(map[string]*mount)}
}

// View is mount uuid's storage s, read through the cache. Gets are cached,
// absent keys (nil entry, nil error) included; Put and Delete go to s and
// then drop the key; List, and any other call, pass through uncached.
//
// Every View of one uuid shares its entries, so it must be given the same
// storage each time, and every write to that storage must go through a
// View (or be followed by Invalidate or Drop).
//
// An entry that Get returns may be shared with other callers: they must not
// modify it or its Value. (The SDK's gRPC storage server, the intended
// caller, only marshals it.)
func (c *Cache) View(uuid string, s logical.Storage) logical.Storage {
	if c.maxBytes <= 0 {
		return s
	}
	return &view{c: c, uuid: uuid, s: s}
}

// Uncached is mount uuid's storage s with Gets that never use the cache,
// and Puts and Deletes that drop their key from it as View's do: a view to
// hand out while the cache is turned off, that leaves no stale entry to a
// cached View of the same mount living beside it (an earlier backend of the
// mount still finishing a request, a setting changed back).
func (c *Cache) Uncached(uuid string, s logical.Storage) logical.Storage {
	if c.maxBytes <= 0 {
		return s
	}
	return &view{c: c, uuid: uuid, s: s, uncached: true}
}

// Invalidate drops key of mount uuid (Vault's Invalidate on another node's
// write).
func (c *Cache) Invalidate(uuid, key string) {
	if c.maxBytes <= 0 {
		return
	}
	c.drop(uuid, key)
}

// Drop drops every entry of mount uuid (the mount is removed or its data
// cleared). Gets of the mount in flight store nothing.
func (c *Cache) Drop(uuid string) {
	if c.maxBytes <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.mounts[uuid]
	if m == nil {
		return
	}
	for _, el := range m.entries {
		c.bytes -= el.Value.(*entry).size
		c.lru.Remove(el)
	}
	clear(m.entries)
	// Reads in flight may have read the data being cleared.
	for _, f := range m.pending {
		f.gen++
	}
	c.forget(m)
}

// Stats are the cache's figures now.
func (c *Cache) Stats() Stats {
	if c.maxBytes <= 0 {
		return Stats{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{
		Entries: c.lru.Len(), Bytes: c.bytes, MaxBytes: c.maxBytes,
		Hits: c.hits, Misses: c.misses, Evictions: c.evictions,
	}
}

// get is view uuid's Get of key, read from s on a miss.
func (c *Cache) get(ctx context.Context, uuid, key string, s logical.Storage) (*logical.StorageEntry, error) {
	c.mu.Lock()
	m := c.mounts[uuid]
	if m == nil {
		m = &mount{uuid: uuid, entries: make(map[string]*list.Element), pending: make(map[string]*fetch)}
		c.mounts[uuid] = m
	} else if el := m.entries[key]; el != nil {
		c.lru.MoveToFront(el)
		c.hits++
		se := el.Value.(*entry).se
		c.mu.Unlock()
		return se, nil
	}
	c.misses++
	f := m.pending[key]
	if f == nil {
		f = &fetch{}
		m.pending[key] = f
	}
	f.n++
	gen := f.gen
	// Never hold the lock while calling s: its Get is a gRPC call to Vault,
	// and every other mount's Gets would wait on it.
	c.mu.Unlock()

	se, err := s.Get(ctx, key)

	c.mu.Lock()
	// Store only a result read entirely after the key's last drop (see
	// fetch), and never an error: the next Get should try again.
	if err == nil && f.gen == gen {
		c.insert(m, key, se)
	}
	// After insert: m, with a Get still counted in flight, cannot be
	// forgotten by insert's evictions.
	if f.n--; f.n == 0 {
		delete(m.pending, key)
	}
	c.forget(m)
	c.mu.Unlock()
	return se, err
}

// insert caches se as key of m, evicting the least recently used entries
// to make room. c.mu is held.
func (c *Cache) insert(m *mount, key string, se *logical.StorageEntry) {
	size := entrySize(key, se)
	if size > c.maxEntry {
		return // it would evict too much (see maxEntry)
	}
	if el := m.entries[key]; el != nil {
		// Another Get of the same generation stored it meanwhile: both were
		// read after the key's last drop, so either will do.
		c.lru.MoveToFront(el)
		return
	}
	// Evict before adding, so that the accounted bytes never exceed the
	// bound, even for a moment.
	for c.bytes+size > c.maxBytes {
		c.evictOldest()
	}
	m.entries[key] = c.lru.PushFront(&entry{m: m, key: key, se: se, size: size})
	c.bytes += size
}

// evictOldest evicts the least recently used entry. c.mu is held, and the
// cache is not empty (c.bytes > 0).
func (c *Cache) evictOldest() {
	el := c.lru.Back()
	e := el.Value.(*entry)
	c.lru.Remove(el)
	delete(e.m.entries, e.key)
	c.bytes -= e.size
	c.evictions++
	c.forget(e.m)
}

// drop drops key of mount uuid after a write of it. c.mu is not held.
func (c *Cache) drop(uuid, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.mounts[uuid]
	if m == nil {
		return // nothing cached and no read in flight
	}
	if el := m.entries[key]; el != nil {
		c.bytes -= el.Value.(*entry).size
		c.lru.Remove(el)
		delete(m.entries, key)
	}
	// A read in flight may have read the value before this write: it must
	// not store it (see fetch).
	if f := m.pending[key]; f != nil {
		f.gen++
	}
	c.forget(m)
}

// forget removes m if it has no entry and no Get in flight. c.mu is held.
func (c *Cache) forget(m *mount) {
	if len(m.entries) == 0 && len(m.pending) == 0 && c.mounts[m.uuid] == m {
		delete(c.mounts, m.uuid)
	}
}

// entrySize is the accounted size of an entry: its strings, the capacity of
// its value (what it holds on to) and the fixed overhead.
func entrySize(key string, se *logical.StorageEntry) int64 {
	n := int64(entryOverhead + len(key))
	if se != nil {
		n += int64(len(se.Key) + cap(se.Value))
	}
	return n
}
