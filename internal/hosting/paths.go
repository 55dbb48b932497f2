package hosting

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// publishedPaths are the special paths Vault last read for each hosted
// mount, by name (Paths.key): what it enforces for them now. They are kept
// in storage too (Store.PutPublished), because Vault reads them only when
// it mounts, unseals or reloads this mount: when this plugin's process
// dies, Vault starts a new one, which it never asks, and which must know
// what the old one published, or every mount whose plugin declares paths
// would wait for a reload nobody needs (a hosted auth method refusing
// every login).
type publishedPaths struct {
	mu     sync.Mutex
	byName map[string]string
	// uuids are the UUIDs of the mounts whose paths Vault read, by name:
	// the stored record holds paths only for the mount of that UUID, so a
	// mount deleted and created again under its name never takes an
	// earlier one's.
	uuids map[string]string
	read  bool // Vault read them from this instance: what is stored is older
	// writeMu orders the writes to storage: each writes what is published
	// when it runs, so the last one to run stores the newest.
	writeMu sync.Mutex
}

// publishedWriteTimeout bounds one write of the published paths.
const publishedWriteTimeout = 10 * time.Second

// LoadPublished takes the special paths an earlier instance of this mount
// published, which Vault still enforces when it started this instance
// without reading them (a restart of the plugin's process). Paths Vault
// read from this instance win. A load that fails leaves none: every mount
// whose plugin declares paths is then pending, never less protected.
func (h *Host) LoadPublished(ctx context.Context) error {
	stored, err := h.cfg.Store.Published(ctx)
	if err != nil {
		return err
	}
	mounts, err := h.cfg.Store.Mounts(ctx)
	if err != nil {
		return err
	}
	byName := map[string]string{}
	for _, m := range mounts {
		if uuid, key, ok := strings.Cut(stored[m.Name], publishedSep); ok && uuid == m.UUID {
			byName[m.Name] = key
		}
	}
	p := &h.published
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.read {
		p.byName = byName
	}
	return nil
}

// publishedSep parts a stored entry: the mount's UUID, then its paths.
const publishedSep = "\x02"

// storePublished writes what is published now, in the background: Vault
// reads the paths while it sets the mount up, which a storage write must
// not hold up. A write lost to a crash leaves the next instance with older
// paths, so that a mount whose paths changed is pending: never less
// protected. A standby cannot write, and needs not: the active node does.
func (h *Host) storePublished() {
	p := &h.published
	if h.cfg.Store == nil {
		return
	}
	go func() {
		p.writeMu.Lock()
		defer p.writeMu.Unlock()
		p.mu.Lock()
		stored := make(map[string]string, len(p.byName))
		for name, key := range p.byName {
			stored[name] = p.uuids[name] + publishedSep + key
		}
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(h.ctx, publishedWriteTimeout)
		defer cancel()
		err := h.cfg.Store.PutPublished(ctx, stored)
		if err == nil || errors.Is(err, logical.ErrReadOnly) || h.ctx.Err() != nil {
			return
		}
		// What is stored is older than what Vault enforces now: none at
		// all makes the next process's mounts with paths pending, which
		// older ones might not.
		h.cfg.Logger.Warn("storing the special paths Vault read", "error", err)
		if err := h.cfg.Store.PutPublished(ctx, nil); err != nil {
			h.cfg.Logger.Error("removing the stored special paths, which are older than what Vault enforces", "error", err)
		}
	}()
}

// SpecialPaths adds to own the paths Vault must enforce for the hosted
// mounts, and records that Vault has read them: each mount's plugin's own
// root and unauthenticated paths, under "mounts/NAME/". Everything else under
// "mounts/" is governed by the token's ACL policy alone, as a Vault mount's
// paths are. A plugin path that matches its empty path ("" or "*") is also
// published as the exact "mounts/NAME", the same root reached without the
// slash: a plugin that makes its root need sudo is not open one character
// away. An exact "mounts/NAME" cannot shadow another mount's wildcard, as
// every wildcard published here starts with "mounts/NAME/" and names hold
// no '/'.
func (h *Host) SpecialPaths(own *logical.Paths, mounts []*Mount) *logical.Paths {
	paths := *own
	paths.Root = append([]string(nil), own.Root...)
	paths.Unauthenticated = append([]string(nil), own.Unauthenticated...)
	p := &h.published
	p.mu.Lock()
	defer p.mu.Unlock()
	p.byName, p.uuids, p.read = map[string]string{}, map[string]string{}, true
	for _, m := range mounts {
		paths.Root = append(paths.Root, publish(m.Name, m.Paths.Root)...)
		paths.Unauthenticated = append(paths.Unauthenticated, publish(m.Name, m.Paths.Unauthenticated)...)
		p.byName[m.Name], p.uuids[m.Name] = m.Paths.key(), m.UUID
	}
	h.storePublished()
	return &paths
}

// publish gives a mount's plugin paths as Vault must hold them.
func publish(name string, declared []string) []string {
	var out []string
	prefix := Prefix + name + "/"
	bare := false
	for _, d := range declared {
		out = append(out, prefix+d)
		bare = bare || d == "" || d == "*"
	}
	if bare {
		out = append(out, Prefix+name)
	}
	return out
}

// pending reports whether the special paths Vault enforces for a mount's
// name differ from the ones its plugin declares: larger (they are not
// enforced yet), smaller or empty (Vault still holds root or
// unauthenticated entries the plugin did not declare, an earlier plugin's
// or an earlier mount's of that name). Until a reload has Vault read them,
// the mount serves nothing. A name Vault has read nothing for is pending
// only if its plugin declares paths: one that declares none is governed by
// the token's ACL alone, at once, as a Vault mount is.
func (p *publishedPaths) pending(m *Mount) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	published, ok := p.byName[m.Name]
	if !ok {
		return !m.Paths.empty()
	}
	return published != m.Paths.key()
}
