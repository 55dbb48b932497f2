package runtimecatalog

import (
	"errors"
	"sort"
	"strings"

	"github.com/hashicorp/vault/sdk/logical"
)

// mountEntry is a hosted mount: a registered secret container plugin
// mounted under this mount's mounts/NAME/, its requests served by the plugin
// in its container and its data kept in a storage view of its own.
type mountEntry struct {
	Name        string            `json:"name"`
	Plugin      string            `json:"plugin"` // the name of a registered secret plugin
	Options     map[string]string `json:"options"`
	Description string            `json:"description"`
	// UUID is the hosted backend's BackendUUID and names its storage view;
	// it never changes, so the data outlives restarts and reloads.
	UUID string `json:"uuid"`
	// Paths are the hosted plugin's own special paths, recorded when it
	// was set up: Vault reads a mount's special paths before any plugin of
	// ours could start, so they must be known from storage.
	Paths hostedPaths `json:"special_paths"`
}

// hostedPaths are the special paths of a hosted plugin that Vault enforces.
type hostedPaths struct {
	Root            []string `json:"root"`
	Unauthenticated []string `json:"unauthenticated"`
}

func pathsOf(p *logical.Paths) hostedPaths {
	if p == nil {
		return hostedPaths{}
	}
	return hostedPaths{Root: p.Root, Unauthenticated: p.Unauthenticated}
}

func (h hostedPaths) empty() bool { return len(h.Root) == 0 && len(h.Unauthenticated) == 0 }

func (h hostedPaths) key() string {
	return strings.Join(h.Root, "\x00") + "\x01" + strings.Join(h.Unauthenticated, "\x00")
}

// dataPrefix is the storage view the hosted plugin sees as all of its
// storage: no other mount and not the catalog share it.
func (m *mountEntry) dataPrefix() string { return hostedDataPrefix + m.UUID + "/" }

func (m *mountEntry) pluginID() pluginID { return pluginID{Type: "secret", Name: m.Plugin} }

// summary is a mount's key_info.
func (m *mountEntry) summary() map[string]interface{} {
	return map[string]interface{}{"plugin": m.Plugin, "description": m.Description}
}

func (m *mountEntry) validate() error {
	if err := validateName("mount", m.Name); err != nil {
		return err
	}
	if m.Plugin == "" {
		return badRequest(errors.New("plugin is required: the name of a registered secret plugin to host"))
	}
	if err := validateName("plugin", m.Plugin); err != nil {
		return err
	}
	keys := make([]string, 0, len(m.Options))
	for k := range m.Options {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "" || strings.ContainsRune(k+m.Options[k], 0) {
			return badRequestf("options entry %q is not KEY=VALUE with a non-empty KEY and no NUL byte", k)
		}
	}
	return nil
}
