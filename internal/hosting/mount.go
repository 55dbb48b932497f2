package hosting

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/hashicorp/go-uuid"

	"github.com/hashicorp/vault/sdk/logical"
)

// Mount is a hosted mount's registration: a registered container plugin (of
// the type its host's mount hosts: secret or auth) mounted under Prefix+Name+"/", its requests served by the plugin in
// its container and its data kept in a storage view of its own. The catalog
// stores it, embedded in its entry, so each JSON name here is the field's
// name in the API and in storage.
type Mount struct {
	Name    string            `json:"name"`
	Plugin  string            `json:"plugin"` // the name of a registered plugin
	Options map[string]string `json:"options"`
	// UUID is the hosted backend's BackendUUID and names its storage view;
	// it never changes, so the data outlives restarts and reloads.
	UUID string `json:"uuid"`
	// Paths are the hosted plugin's own special paths, recorded when it
	// was set up: Vault reads a mount's special paths before any plugin of
	// ours could start, so they must be known from storage.
	Paths Paths `json:"special_paths"`
}

// Paths are the special paths of a hosted plugin that Vault enforces.
type Paths struct {
	Root            []string `json:"root"`
	Unauthenticated []string `json:"unauthenticated"`
}

func pathsOf(p *logical.Paths) Paths {
	if p == nil {
		return Paths{}
	}
	return Paths{Root: p.Root, Unauthenticated: p.Unauthenticated}
}

func (p Paths) empty() bool { return len(p.Root) == 0 && len(p.Unauthenticated) == 0 }

// Equal reports whether p and q are the same paths (nil and empty alike).
func (p Paths) Equal(q Paths) bool { return p.key() == q.key() }

func (p Paths) key() string {
	return strings.Join(p.Root, "\x00") + "\x01" + strings.Join(p.Unauthenticated, "\x00")
}

// Prefix is where hosted mounts live in this plugin's paths.
const Prefix = "mounts/"

// SplitPath splits a request path into a hosted mount's name and the path
// within it: "mounts/kv/data/x" is ("kv", "data/x"); "mounts/kv/" and
// "mounts/kv" are both ("kv", ""), the plugin's own root, as "kv/" and "kv"
// are for a Vault mount. The mount's settings live elsewhere (hosted/NAME).
func SplitPath(path string) (name, rest string, ok bool) {
	after, ok := strings.CutPrefix(path, Prefix)
	if !ok {
		return "", "", false
	}
	name, rest, _ = strings.Cut(after, "/")
	return name, rest, name != ""
}

// newUUID gives a new mount its UUID, which names its storage for good.
func (m *Mount) newUUID() error {
	id, err := uuid.GenerateUUID()
	m.UUID = id
	return err
}

// Changes lists what differs in m from was, in the settings that a
// running mount restarts for: its plugin and its options.
func (m *Mount) Changes(was *Mount) []string {
	var changes []string
	if m.Plugin != was.Plugin {
		changes = append(changes, fmt.Sprintf("plugin %s -> %s", was.Plugin, m.Plugin))
	}
	keys := map[string]bool{}
	for k := range m.Options {
		keys[k] = true
	}
	for k := range was.Options {
		keys[k] = true
	}
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		before, had := was.Options[k]
		after, has := m.Options[k]
		switch {
		case had && has && before != after:
			changes = append(changes, fmt.Sprintf("option %s %s -> %s", k, before, after))
		case has && !had:
			changes = append(changes, fmt.Sprintf("option %s set to %s", k, after))
		case had && !has:
			changes = append(changes, fmt.Sprintf("option %s removed", k))
		}
	}
	return changes
}
