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
	p.byName = map[string]string{}
	for _, m := range mounts {
		paths.Root = append(paths.Root, publish(m.Name, m.Paths.Root)...)
		paths.Unauthenticated = append(paths.Unauthenticated, publish(m.Name, m.Paths.Unauthenticated)...)
		p.byName[m.Name] = m.Paths.key()
	}
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
