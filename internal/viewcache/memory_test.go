package viewcache

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// genStorage makes every value on the fly and keeps nothing, so that the
// heap's growth is the cache's alone. A key's value is 200 bytes.
type genStorage struct{ gets atomic.Int64 }

func (s *genStorage) Get(_ context.Context, key string) (*logical.StorageEntry, error) {
	s.gets.Add(1)
	v := make([]byte, 200)
	copy(v, key)
	// Its own copy of the key, as a real storage's entry has.
	return &logical.StorageEntry{Key: strings.Clone(key), Value: v}, nil
}

func (s *genStorage) Put(context.Context, *logical.StorageEntry) error { return nil }
func (s *genStorage) Delete(context.Context, string) error             { return nil }
func (s *genStorage) List(context.Context, string) ([]string, error)   { return nil, nil }

func heapAlloc() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

func TestMemoryBound(t *testing.T) {
	const maxBytes, n = 8 << 20, 100_000
	ctx := context.Background()
	under := &genStorage{}
	// Keys are made afresh for each call, as the gRPC server's are: those
	// the cache keeps are its memory.
	key := func(i int) string { return "data/entries/key-" + strconv.Itoa(i) }
	value := make([]byte, 200)

	before := heapAlloc()
	c := New(maxBytes)
	v := c.View("0f8b0e6c-5d6a-4c4e-9a4e-2d3f5a6b7c8d", under)
	for i := range n {
		if err := v.Put(ctx, &logical.StorageEntry{Key: key(i), Value: value}); err != nil {
			t.Fatal(err)
		}
		for _, j := range []int{i, i / 2, i} { // the last a hit, i/2 mostly not
			if se, err := v.Get(ctx, key(j)); err != nil || se == nil {
				t.Fatalf("Get %s = %v, %v", key(j), se, err)
			}
		}
		if i%10_000 == 0 {
			if st := c.Stats(); st.Bytes > st.MaxBytes {
				t.Fatalf("after %d keys: %d bytes over the bound %d", i, st.Bytes, st.MaxBytes)
			}
		}
	}
	growth := heapAlloc() - before
	st := c.Stats()
	runtime.KeepAlive(c)

	t.Logf("stats %+v; heap growth %d bytes, %.2f of accounted bytes, %.2f of the bound",
		st, growth, float64(growth)/float64(st.Bytes), float64(growth)/maxBytes)
	checkInvariants(t, c)
	if st.Bytes > st.MaxBytes || st.MaxBytes != maxBytes {
		t.Fatalf("accounted %d bytes, bound %d, want at most %d", st.Bytes, st.MaxBytes, maxBytes)
	}
	if st.Evictions == 0 || st.Entries != int(st.Misses-st.Evictions) || st.Hits < n {
		t.Fatalf("stats %+v: want evictions, entries = misses - evictions, at least %d hits", st, n)
	}
	// Full: less than one entry's room is left.
	if free := st.MaxBytes - st.Bytes; free > 1024 {
		t.Fatalf("%d bytes free after %d keys: the cache did not fill", free, n)
	}
	// The real heap cost stays within 1.5x the bound. The overhead
	// estimate (entryOverhead) is meant to cover the structs, so growth
	// comes out near 1x (0.98 with Go 1.26); the other half is room for
	// what it cannot see exactly: the mount's map never shrinks and grows
	// by doubling (its table may have up to twice the slots of the entries
	// it holds), size-class rounding of keys and values, and GC
	// bookkeeping. Not 2x: an estimate too small by 190 bytes an entry
	// (about 40%) comes out near 1.75x, and should fail. Growth far under
	// the accounted bytes would mean the test measures nothing.
	if growth > maxBytes*3/2 {
		t.Fatalf("heap grew %d bytes, over 1.5x the bound %d", growth, maxBytes)
	}
	if growth < st.Bytes/2 {
		t.Fatalf("heap grew %d bytes, under half the %d accounted: not measuring the cache", growth, st.Bytes)
	}
}

// staticStorage answers every Get with one entry, made once, so that a
// benchmark measures the cache's cost alone.
type staticStorage struct{ se *logical.StorageEntry }

func (s staticStorage) Get(context.Context, string) (*logical.StorageEntry, error) {
	return s.se, nil
}
func (s staticStorage) Put(context.Context, *logical.StorageEntry) error { return nil }
func (s staticStorage) Delete(context.Context, string) error             { return nil }
func (s staticStorage) List(context.Context, string) ([]string, error)   { return nil, nil }

func benchStorage() staticStorage {
	return staticStorage{&logical.StorageEntry{Key: "k", Value: make([]byte, 200)}}
}

// BenchmarkHit is a Get answered from the cache.
func BenchmarkHit(b *testing.B) {
	ctx := context.Background()
	v := New(64<<20).View("mount", benchStorage())
	if _, err := v.Get(ctx, "config/key"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if se, err := v.Get(ctx, "config/key"); err != nil || se == nil {
			b.Fatal(se, err)
		}
	}
}

// BenchmarkHitParallel is BenchmarkHit from every core at once: the lock's
// contention.
func BenchmarkHitParallel(b *testing.B) {
	ctx := context.Background()
	v := New(64<<20).View("mount", benchStorage())
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = "config/key-" + strconv.Itoa(i)
		if _, err := v.Get(ctx, keys[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if se, err := v.Get(ctx, keys[i%len(keys)]); err != nil || se == nil {
				b.Fatal(se, err)
			}
			i++
		}
	})
}

// BenchmarkMiss is a Get that misses, reads the storage, caches the entry
// and evicts another: the cache holds about 1,000 of the 65,536 keys cycled.
func BenchmarkMiss(b *testing.B) {
	ctx := context.Background()
	c := New(1000 * (entryOverhead + 300))
	v := c.View("mount", benchStorage())
	keys := make([]string, 1<<16)
	for i := range keys {
		keys[i] = "data/key-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if se, err := v.Get(ctx, keys[i&(len(keys)-1)]); err != nil || se == nil {
			b.Fatal(se, err)
		}
		i++
	}
	if st := c.Stats(); st.Hits != 0 {
		b.Fatalf("%d hits, want only misses", st.Hits)
	}
}
