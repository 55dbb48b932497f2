package hosting

import (
	"sync"

	"github.com/hashicorp/vault/sdk/logical"
)

// publishedPaths are the special paths Vault last read for each hosted
// mount, by name (Paths.key): what it enforces for them now.
type publishedPaths struct {
	mu     sync.Mutex
	byName map[string]string
}

// SpecialPaths adds to own the paths Vault must enforce for the hosted
// mounts, and records that Vault has read them. Vault's root paths match
// the longest prefix, and an exact entry overrides a shorter wildcard:
// own holds "mounts/*" (every mount's settings, and every path of a mount
// Vault has not read yet, need sudo); each mount read here adds the exact
// "mounts/NAME/", which lifts that for its data, plus its plugin's own root
// and unauthenticated paths under it. An exact entry also matches itself,
// so the list of a mount's top level keeps needing sudo: an exact
// "mounts/NAME" instead would lift sudo from a new mount named NAMEx.
func (h *Host) SpecialPaths(own *logical.Paths, mounts []*Mount) *logical.Paths {
	paths := *own
	paths.Root = append([]string(nil), own.Root...)
	paths.Unauthenticated = append([]string(nil), own.Unauthenticated...)
	p := &h.published
	p.mu.Lock()
	defer p.mu.Unlock()
	p.byName = map[string]string{}
	for _, m := range mounts {
		prefix := Prefix + m.Name + "/"
		paths.Root = append(paths.Root, prefix)
		for _, r := range m.Paths.Root {
			paths.Root = append(paths.Root, prefix+r)
		}
		for _, u := range m.Paths.Unauthenticated {
			paths.Unauthenticated = append(paths.Unauthenticated, prefix+u)
		}
		p.byName[m.Name] = m.Paths.key()
	}
	return &paths
}

// pending reports whether the special paths Vault enforces for a mount's
// name differ from the ones its plugin declares: larger (they are not
// enforced yet), smaller or empty (Vault still holds root or
// unauthenticated entries the plugin did not declare, an earlier plugin's
// or an earlier mount's of that name). Until a reload has Vault read them,
// the mount serves nothing. A name Vault has read nothing for is pending
// only if its plugin declares paths: the "mounts/*" wildcard makes all of
// it need sudo meanwhile, never less protected than it should be.
func (p *publishedPaths) pending(m *Mount) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	published, ok := p.byName[m.Name]
	if !ok {
		return !m.Paths.empty()
	}
	return published != m.Paths.key()
}

// PendingPublish reports whether Vault has not read a mount's paths yet:
// until it does, the "mounts/*" wildcard makes every path of it need sudo.
func (h *Host) PendingPublish(name string) bool {
	h.published.mu.Lock()
	defer h.published.mu.Unlock()
	_, ok := h.published.byName[name]
	return !ok
}
