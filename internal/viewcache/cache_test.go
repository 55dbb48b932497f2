package viewcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// countingStorage counts the Gets and Lists that reach a storage.
type countingStorage struct {
	logical.Storage
	gets, lists atomic.Int64
}

func (s *countingStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	s.gets.Add(1)
	return s.Storage.Get(ctx, key)
}

func (s *countingStorage) List(ctx context.Context, prefix string) ([]string, error) {
	s.lists.Add(1)
	return s.Storage.List(ctx, prefix)
}

func newCounting() *countingStorage { return &countingStorage{Storage: &logical.InmemStorage{}} }

// writeThenFail writes and deletes, then reports failure all the same, as a
// call timing out after it was done would.
type writeThenFail struct{ logical.Storage }

func (s writeThenFail) Put(ctx context.Context, e *logical.StorageEntry) error {
	_ = s.Storage.Put(ctx, e)
	return errors.New("timed out")
}

func (s writeThenFail) Delete(ctx context.Context, key string) error {
	_ = s.Storage.Delete(ctx, key)
	return errors.New("timed out")
}

func put(t testing.TB, s logical.Storage, key, value string) {
	t.Helper()
	if err := s.Put(context.Background(), &logical.StorageEntry{Key: key, Value: []byte(value)}); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// want checks that key reads value, or absent for "".
func want(t testing.TB, s logical.Storage, key, value string) {
	t.Helper()
	se, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	got := ""
	if se != nil {
		got = string(se.Value)
		if got == "" {
			t.Fatalf("get %s: empty value (tests use \"\" for absent)", key)
		}
	}
	if got != value {
		t.Fatalf("get %s = %q, want %q", key, got, value)
	}
}

func wantGets(t testing.TB, s *countingStorage, n int64) {
	t.Helper()
	if got := s.gets.Load(); got != n {
		t.Fatalf("storage Gets = %d, want %d", got, n)
	}
}

// checkInvariants checks the cache's bookkeeping: accounted bytes are the
// sum of the entries' sizes and within the bound, and the LRU list and the
// mounts' maps hold the same entries.
func checkInvariants(t testing.TB, c *Cache) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var sum int64
	for el := c.lru.Front(); el != nil; el = el.Next() {
		e := el.Value.(*entry)
		sum += e.size
		if e.m.entries[e.key] != el || c.mounts[e.m.uuid] != e.m {
			t.Fatalf("entry %s/%s not in its mount's map", e.m.uuid, e.key)
		}
	}
	n := 0
	for _, m := range c.mounts {
		n += len(m.entries)
	}
	if sum != c.bytes || c.bytes > c.maxBytes || n != c.lru.Len() {
		t.Fatalf("bytes %d, sum of sizes %d, max %d; %d entries in maps, %d in list", c.bytes, sum, c.maxBytes, n, c.lru.Len())
	}
}

func TestDisabled(t *testing.T) {
	for _, max := range []int64{0, -1} {
		c := New(max)
		s := &logical.InmemStorage{}
		if v := c.View("u", s); v != logical.Storage(s) {
			t.Fatalf("New(%d).View = %T, want the storage itself", max, v)
		}
		c.Invalidate("u", "k")
		c.Drop("u")
		if st := c.Stats(); st != (Stats{}) {
			t.Fatalf("New(%d).Stats = %+v, want zero", max, st)
		}
	}
}

func TestNoStaleReadSequential(t *testing.T) {
	under := newCounting()
	c := New(1 << 20)
	v := c.View("u1", under)

	put(t, v, "k", "v1")
	want(t, v, "k", "v1")
	want(t, v, "k", "v1")
	wantGets(t, under, 1) // the second from the cache

	put(t, v, "k", "v2")
	want(t, v, "k", "v2")
	if err := v.Delete(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	want(t, v, "k", "")
	want(t, v, "k", "")
	wantGets(t, under, 3)

	// Another node's write: straight to storage, then Vault's Invalidate.
	put(t, under.Storage, "k", "v3")
	want(t, v, "k", "") // still cached: what Invalidate is for
	c.Invalidate("u1", "k")
	want(t, v, "k", "v3")
	put(t, under.Storage, "k", "v4")
	c.Invalidate("u1", "k")
	want(t, v, "k", "v4")

	// A second View of the mount shares its entries, and sees its writes.
	v2 := c.View("u1", under)
	want(t, v2, "k", "v4")
	wantGets(t, under, 5)
	put(t, v2, "k", "v5")
	want(t, v, "k", "v5")
	checkInvariants(t, c)
}

func TestFailedWriteStillDrops(t *testing.T) {
	under := newCounting()
	c := New(1 << 20)
	v := c.View("u", writeThenFail{under})

	put(t, under, "k", "v1")
	want(t, v, "k", "v1")
	if err := v.Put(context.Background(), &logical.StorageEntry{Key: "k", Value: []byte("v2")}); err == nil {
		t.Fatal("Put: no error")
	}
	want(t, v, "k", "v2")
	if err := v.Delete(context.Background(), "k"); err == nil {
		t.Fatal("Delete: no error")
	}
	want(t, v, "k", "")
	wantGets(t, under, 3)
}

func TestMountsIsolated(t *testing.T) {
	c := New(1 << 20)
	s1, s2 := newCounting(), newCounting()
	v1, v2 := c.View("uuid-1", s1), c.View("uuid-2", s2)
	for _, k := range []string{"a", "b"} {
		put(t, v1, k, "one-"+k)
		put(t, v2, k, "two-"+k)
	}
	for range 2 {
		for _, k := range []string{"a", "b"} {
			want(t, v1, k, "one-"+k)
			want(t, v2, k, "two-"+k)
		}
	}
	wantGets(t, s1, 2)
	wantGets(t, s2, 2)

	// Both change elsewhere; only mount 1 is invalidated.
	put(t, s1.Storage, "a", "one-a2")
	put(t, s2.Storage, "a", "two-a2")
	c.Invalidate("uuid-1", "a")
	want(t, v1, "a", "one-a2")
	want(t, v2, "a", "two-a")

	// A write through one mount drops nothing of the other.
	put(t, v1, "b", "one-b2")
	want(t, v1, "b", "one-b2")
	want(t, v2, "b", "two-b")
	wantGets(t, s2, 2)

	// Drop of mount 1 leaves mount 2 cached.
	put(t, s1.Storage, "a", "one-a3")
	put(t, s2.Storage, "b", "two-b3")
	c.Drop("uuid-1")
	want(t, v1, "a", "one-a3")
	want(t, v2, "b", "two-b")
	wantGets(t, s2, 2)
	checkInvariants(t, c)

	c.Drop("uuid-1")
	c.Drop("uuid-2")
	if st := c.Stats(); st.Entries != 0 || st.Bytes != 0 || len(c.mounts) != 0 {
		t.Fatalf("after Drop of both: %+v, %d mounts", st, len(c.mounts))
	}
}

func TestNegativeCaching(t *testing.T) {
	under := newCounting()
	c := New(1 << 20)
	v := c.View("u", under)
	want(t, v, "missing", "")
	want(t, v, "missing", "")
	wantGets(t, under, 1)
	if st := c.Stats(); st.Hits != 1 || st.Misses != 1 || st.Entries != 1 {
		t.Fatalf("stats %+v, want 1 hit, 1 miss, 1 entry", st)
	}
	put(t, v, "missing", "here")
	want(t, v, "missing", "here")
}

func TestErrorsNotCached(t *testing.T) {
	inmem := &logical.InmemStorage{}
	under := &countingStorage{Storage: inmem}
	c := New(1 << 20)
	v := c.View("u", under)
	put(t, v, "k", "v1")
	inmem.FailGet(true)
	for range 2 {
		if se, err := v.Get(context.Background(), "k"); err == nil || se != nil {
			t.Fatalf("Get with failing storage = %v, %v; want an error", se, err)
		}
	}
	wantGets(t, under, 2)
	if st := c.Stats(); st.Entries != 0 || len(c.mounts) != 0 {
		t.Fatalf("after errors: %+v, %d mounts", st, len(c.mounts))
	}
	inmem.FailGet(false)
	want(t, v, "k", "v1")
	want(t, v, "k", "v1")
	wantGets(t, under, 3)
}

func TestLargeEntryNotCached(t *testing.T) {
	under := newCounting()
	c := New(16 * 1024) // entries up to 1024 bytes
	v := c.View("u", under)
	fits := 1024 - entryOverhead - 2*len("fits")
	// bytes.Repeat's capacity is its length, which the cache accounts.
	for k, n := range map[string]int{"fits": fits, "over": fits + 1} {
		if err := v.Put(context.Background(), &logical.StorageEntry{Key: k, Value: bytes.Repeat([]byte("x"), n)}); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		for _, k := range []string{"fits", "over"} {
			if _, err := v.Get(context.Background(), k); err != nil {
				t.Fatal(err)
			}
		}
	}
	wantGets(t, under, 3) // "fits" once, "over" twice
	if st := c.Stats(); st.Entries != 1 || st.Bytes != 1024 {
		t.Fatalf("stats %+v, want one entry of 1024 bytes", st)
	}
}

func TestListPassesThrough(t *testing.T) {
	under := newCounting()
	v := New(1<<20).View("u", under)
	put(t, v, "dir/a", "1")
	for range 2 {
		keys, err := v.List(context.Background(), "dir/")
		if err != nil || len(keys) != 1 || keys[0] != "a" {
			t.Fatalf("List = %v, %v", keys, err)
		}
	}
	put(t, v, "dir/b", "2")
	if keys, _ := v.List(context.Background(), "dir/"); len(keys) != 2 {
		t.Fatalf("List after Put = %v", keys)
	}
	if n := under.lists.Load(); n != 3 {
		t.Fatalf("storage Lists = %d, want 3", n)
	}
}

func TestStats(t *testing.T) {
	under := newCounting()
	key := func(i int) string { return fmt.Sprintf("k%02d", i) }
	// Every entry: a 3-byte key (twice: the map's and the entry's) and a
	// 10-byte value, so the cache holds exactly 20.
	const size = entryOverhead + 3 + 3 + 10
	c := New(20 * size)
	v := c.View("u", under)
	for i := range 21 {
		if err := under.Put(context.Background(), &logical.StorageEntry{Key: key(i), Value: make([]byte, 10)}); err != nil {
			t.Fatal(err)
		}
	}
	get := func(i int) {
		t.Helper()
		if se, err := v.Get(context.Background(), key(i)); err != nil || se == nil {
			t.Fatalf("Get %s = %v, %v", key(i), se, err)
		}
	}
	for i := range 20 {
		get(i)
	}
	wantStats := func(w Stats) {
		t.Helper()
		w.MaxBytes = 20 * size
		if st := c.Stats(); st != w {
			t.Fatalf("stats %+v, want %+v", st, w)
		}
		checkInvariants(t, c)
	}
	wantStats(Stats{Entries: 20, Bytes: 20 * size, Misses: 20})

	get(0)  // hit, and k00 is now the most recently used
	get(20) // miss: evicts k01, the least recently used
	wantStats(Stats{Entries: 20, Bytes: 20 * size, Hits: 1, Misses: 21, Evictions: 1})
	get(0) // still cached
	get(1) // evicted: a miss, evicting k02
	wantStats(Stats{Entries: 20, Bytes: 20 * size, Hits: 2, Misses: 22, Evictions: 2})
	wantGets(t, under, 22)

	// An absent key costs the overhead and its key only.
	want(t, v, "zzz", "")
	wantStats(Stats{Entries: 20, Bytes: 19*size + entryOverhead + 3, Hits: 2, Misses: 23, Evictions: 3})
	c.Invalidate("u", "zzz")
	wantStats(Stats{Entries: 19, Bytes: 19 * size, Hits: 2, Misses: 23, Evictions: 3})
}

// An uncached view reads storage every time, and its writes drop their key
// from a cached view of the same mount living beside it.
func TestUncachedViewDropsWhatItWrites(t *testing.T) {
	under := newCounting()
	c := New(1 << 20)
	cached, uncached := c.View("u", under), c.Uncached("u", under)
	put(t, cached, "k", "one")
	want(t, cached, "k", "one")
	want(t, cached, "k", "one")
	wantGets(t, under, 1)
	want(t, uncached, "k", "one")
	want(t, uncached, "k", "one")
	wantGets(t, under, 3)
	put(t, uncached, "k", "two")
	want(t, cached, "k", "two")
	if err := uncached.Delete(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	want(t, cached, "k", "")
	checkInvariants(t, c)
}
