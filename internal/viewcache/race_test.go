package viewcache

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// gate stops one Get after it has read the storage: read is closed then,
// and the Get returns once release is closed.
type gate struct{ read, release chan struct{} }

// pausingStorage is a storage whose Gets of an armed key pause after
// reading, so that a test can write while a Get holds the old value.
type pausingStorage struct {
	*countingStorage
	mu    sync.Mutex
	gates map[string]*gate
}

func newPausing() *pausingStorage {
	return &pausingStorage{countingStorage: newCounting(), gates: make(map[string]*gate)}
}

// arm makes the next Get of key pause after reading.
func (s *pausingStorage) arm(key string) *gate {
	g := &gate{read: make(chan struct{}), release: make(chan struct{})}
	s.mu.Lock()
	s.gates[key] = g
	s.mu.Unlock()
	return g
}

func (s *pausingStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	s.mu.Lock()
	g := s.gates[key]
	delete(s.gates, key)
	s.mu.Unlock()
	se, err := s.countingStorage.Get(ctx, key)
	if g != nil {
		close(g.read)
		<-g.release
	}
	return se, err
}

// TestNoStaleReadStraddle makes a Get read the old value, completes a write
// of the key while that Get is paused, then lets it return: the value it
// read must not be cached.
func TestNoStaleReadStraddle(t *testing.T) {
	const uuid = "u"
	// Each write changes "k" from "old" and returns the value it leaves.
	writes := map[string]func(t *testing.T, c *Cache, v, under logical.Storage) string{
		"put": func(t *testing.T, c *Cache, v, under logical.Storage) string {
			put(t, v, "k", "new")
			return "new"
		},
		"delete": func(t *testing.T, c *Cache, v, under logical.Storage) string {
			if err := v.Delete(context.Background(), "k"); err != nil {
				t.Fatal(err)
			}
			return ""
		},
		"invalidate": func(t *testing.T, c *Cache, v, under logical.Storage) string {
			put(t, under, "k", "new") // another node's write
			c.Invalidate(uuid, "k")
			return "new"
		},
		"drop": func(t *testing.T, c *Cache, v, under logical.Storage) string {
			put(t, under, "k", "new") // the mount's data changed wholesale
			c.Drop(uuid)
			return "new"
		},
	}
	for name, write := range writes {
		// alone: only the paused Get is in flight; its result must be
		// thrown away, and the next Get reads the storage again.
		// joined: a Get that begins after the write, while the paused one
		// is in flight, reads the new value and caches it: the per-key
		// generation refuses only reads that began before the write.
		for _, joined := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/joined=%v", name, joined), func(t *testing.T) {
				under := newPausing()
				c := New(1 << 20)
				v := c.View(uuid, under)
				put(t, under.countingStorage, "k", "old")
				// Another key of the mount, cached, so that the mount stays.
				put(t, v, "other", "x")
				want(t, v, "other", "x")

				g := under.arm("k")
				stale := make(chan string)
				go func() {
					se, err := v.Get(context.Background(), "k")
					if err != nil || se == nil {
						stale <- fmt.Sprintf("error %v, entry %v", err, se)
						return
					}
					stale <- string(se.Value)
				}()
				<-g.read
				now := write(t, c, v, under.countingStorage)
				if joined {
					want(t, v, "k", now)
				}
				close(g.release)
				if got := <-stale; got != "old" {
					t.Fatalf("paused Get = %s, want old (read before the write)", got)
				}

				gets := under.gets.Load()
				want(t, v, "k", now)
				if joined {
					wantGets(t, under.countingStorage, gets) // cached by the joined Get
				} else {
					wantGets(t, under.countingStorage, gets+1) // the paused Get's result was not cached
				}
				want(t, v, "k", now)
				checkInvariants(t, c)
			})
		}
	}
}

// jitterStorage yields around its reads, to vary the interleavings.
type jitterStorage struct{ logical.Storage }

func (s jitterStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	if rand.IntN(2) == 0 {
		runtime.Gosched()
	}
	se, err := s.Storage.Get(ctx, key)
	if rand.IntN(2) == 0 {
		runtime.Gosched()
	}
	return se, err
}

// keyState is the test's record of one key's writes. Its writes are
// serialized, so the storage's order is the order of their versions.
type keyState struct {
	mu         sync.Mutex
	done       atomic.Uint64 // version of the last write completed
	delStarted atomic.Uint64 // version of the last delete begun
}

// TestNoStaleReadRandomized runs Puts, Deletes, other nodes' writes with
// Invalidate, Drops and Gets on a few keys of two mounts at once, and checks
// that every Get returns a value at least as new as the last write that
// completed before the Get began.
func TestNoStaleReadRandomized(t *testing.T) {
	for _, tc := range []struct {
		name     string
		keys     int
		maxBytes int64
	}{
		{"few keys", 3, 1 << 20},
		{"evicting", 12, 16 * (entryOverhead + 32)}, // about 16 of the 24 entries fit
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(tc.maxBytes)
			uuids := []string{"mount-a", "mount-b"}
			var unders, views []logical.Storage
			states := make(map[string][]*keyState)
			for _, u := range uuids {
				under := &logical.InmemStorage{}
				unders = append(unders, under)
				views = append(views, c.View(u, jitterStorage{under}))
				for range tc.keys {
					states[u] = append(states[u], &keyState{})
				}
			}
			var version atomic.Uint64
			ctx := context.Background()

			const workers, ops = 8, 3000
			var wg sync.WaitGroup
			errs := make(chan error, workers)
			for range workers {
				wg.Go(func() {
					for range ops {
						mi, ki := rand.IntN(len(uuids)), rand.IntN(tc.keys)
						u, v, under, st := uuids[mi], views[mi], unders[mi], states[uuids[mi]][ki]
						key := "key-" + strconv.Itoa(ki)
						if err := step(ctx, c, u, v, under, st, key, &version); err != nil {
							errs <- fmt.Errorf("%s %s: %w", u, key, err)
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			checkInvariants(t, c)
			st := c.Stats()
			t.Logf("stats %+v", st)
			if st.Hits == 0 {
				t.Fatal("no hits: the test did not exercise the cache")
			}
			if tc.name == "evicting" && st.Evictions == 0 {
				t.Fatal("no evictions")
			}
		})
	}
}

// step does one random operation and checks it, if a Get.
func step(ctx context.Context, c *Cache, uuid string, v, under logical.Storage, st *keyState, key string, version *atomic.Uint64) error {
	write := func(del bool, s logical.Storage, invalidate bool) error {
		st.mu.Lock()
		defer st.mu.Unlock()
		n := version.Add(1)
		var err error
		if del {
			st.delStarted.Store(n)
			err = s.Delete(ctx, key)
		} else {
			err = s.Put(ctx, &logical.StorageEntry{Key: key, Value: []byte(strconv.FormatUint(n, 10))})
		}
		if invalidate {
			c.Invalidate(uuid, key)
		}
		st.done.Store(n)
		return err
	}
	switch r := rand.IntN(100); {
	case r < 15:
		return write(false, v, false)
	case r < 20:
		return write(true, v, false)
	case r < 25:
		return write(false, under, true) // another node's write
	case r < 28:
		return write(true, under, true)
	case r < 29:
		c.Drop(uuid)
		return nil
	}
	before := st.done.Load()
	se, err := v.Get(ctx, key)
	if err != nil {
		return err
	}
	if se == nil {
		// Absent: the key must have been deleted at or after the last
		// write completed before the Get, or never written by then.
		if d := st.delStarted.Load(); before != 0 && d < before {
			return fmt.Errorf("stale read: absent (deleted at %d) after write %d completed", d, before)
		}
		return nil
	}
	got, err := strconv.ParseUint(string(se.Value), 10, 64)
	if err != nil {
		return err
	}
	if got < before {
		return fmt.Errorf("stale read: version %d after write %d completed", got, before)
	}
	return nil
}
