package viewcache

import (
	"context"

	"github.com/hashicorp/vault/sdk/logical"
)

// view is one mount's storage read through the cache.
type view struct {
	c        *Cache
	uuid     string
	s        logical.Storage
	uncached bool // Gets go to s, writes still drop their keys (Uncached)
}

var _ logical.Storage = (*view)(nil)

// Get is key's entry, from the cache or else from the storage. The entry
// may be shared with other callers: do not modify it.
func (v *view) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	if v.uncached {
		return v.s.Get(ctx, key)
	}
	return v.c.get(ctx, v.uuid, key, v.s)
}

// Put writes entry to the storage and then drops its key.
//
// The key is dropped, not set to entry: two concurrent Puts of a key could
// reach the cache in the other order than they reached the storage, and
// leave the older value cached for good. The next Get reads the storage.
func (v *view) Put(ctx context.Context, entry *logical.StorageEntry) error {
	err := v.s.Put(ctx, entry)
	if entry != nil {
		// Dropped even if the Put failed: it may have been written all the
		// same (a timeout after the write, say).
		v.c.drop(v.uuid, entry.Key)
	}
	return err
}

// Delete deletes key from the storage and then drops it.
func (v *view) Delete(ctx context.Context, key string) error {
	err := v.s.Delete(ctx, key)
	// Dropped even if the Delete failed: it may have been done all the same.
	v.c.drop(v.uuid, key)
	return err
}

// List passes through uncached: keys are listed seldom, and caching lists
// would make every Put and Delete drop the lists of its key's prefixes.
func (v *view) List(ctx context.Context, prefix string) ([]string, error) {
	return v.s.List(ctx, prefix)
}
