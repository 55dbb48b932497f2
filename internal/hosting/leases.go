package hosting

import (
	"context"
	"sync"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
)

// keepsLease is Vault's own rule for a plugin named kv: its secrets carry a
// TTL for information but get no lease unless the mount has
// leased_passthrough=true (and never for a snapshot read). Vault applies it
// by the mount's plugin name, which for a hosted mount is ours, so the host
// applies it: otherwise every kv v1 read would register a lease.
func keepsLease(m *Mount, snapshotRead bool) bool {
	if m.Plugin != "kv" {
		return true
	}
	return m.Options["leased_passthrough"] == "true" && !snapshotRead
}

// leaseFlushDelay is how long a changed lease count waits to be written.
const leaseFlushDelay = time.Second

// leaseCount is the number of leases a mount's plugin issued that were not
// revoked yet: Vault revokes every lease through the plugin (on expiry
// too), so the count is exact while the mount lives. It is counted in memory
// and written behind, within leaseFlushDelay: a plugin that issues a lease
// per read must not pay a storage write per read.
type leaseCount struct {
	store  Store
	id     string // the mount's UUID
	logger hclog.Logger

	mu      sync.Mutex
	n       int
	loaded  bool
	pending bool // changed since the last write
	dropped bool // the mount is deleted: nothing is written again
}

// count adds what a request's answer did to the count.
func (l *leaseCount) count(ctx context.Context, op logical.Operation, issued bool) {
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
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dropped {
		return
	}
	if !l.loaded {
		n, err := l.store.Leases(ctx, l.id)
		if err != nil {
			l.logger.Error("reading the lease count of a hosted mount", "error", err)
			return
		}
		l.n, l.loaded = n, true
	}
	if l.n += delta; l.n < 0 {
		l.n = 0
	}
	if !l.pending {
		l.pending = true
		time.AfterFunc(leaseFlushDelay, func() { l.flush(context.Background()) })
	}
}

// flush writes the count when it changed since the last write.
func (l *leaseCount) flush(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.pending || l.dropped {
		return nil
	}
	if err := l.store.PutLeases(ctx, l.id, l.n); err != nil {
		l.logger.Error("writing the lease count of a hosted mount", "error", err)
		return err
	}
	l.pending = false
	return nil
}

// outstanding is the number of leases still out, as stored after a flush.
func (l *leaseCount) outstanding(ctx context.Context) (int, error) {
	if err := l.flush(ctx); err != nil {
		return 0, err
	}
	return l.store.Leases(ctx, l.id)
}

// drop forgets the count for good: the mount is deleted, and its stored
// count with it.
func (l *leaseCount) drop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dropped, l.pending = true, false
}
