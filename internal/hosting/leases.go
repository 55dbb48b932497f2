package hosting

import (
	"context"
	"strings"
	"sync"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
)

// leased reports whether a hosted plugin's answer carries a lease that
// Vault can renew and revoke through the plugin. Vault registers a lease for
// every Secret a plugin returns, but the SDK's framework marks each secret
// it issues as one with its secret_type (framework.Secret.Response), and
// routes renew and revoke by it: a Secret without one is a TTL given for
// information, as HashiCorp's kv answers unless leased_passthrough=true,
// under whatever name it is registered. Registering it would leave a lease
// that nothing renews or revokes, one per read. A snapshot read never gets
// a lease (Vault refuses to register one).
func leased(internalData map[string]interface{}, snapshotRead bool) bool {
	_, typed := internalData["secret_type"]
	return typed && !snapshotRead
}

// leasedProto is leased for a secret as protocol buffers, whose internal
// data is JSON: a key secret_type is a quote, its name, a quote and a
// colon, which a string value can never hold (its quotes are escaped), so
// finding it needs no decoding on every read.
func leasedProto(internalData string, snapshotRead bool) bool {
	return !snapshotRead && strings.Contains(internalData, `"secret_type":`)
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
