package runtimecatalog

import (
	"sort"
	"strings"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/hosting"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/reqerr"
)

// mountEntry is a hosted mount: a registered container plugin
// mounted under this mount's mounts/NAME/, its requests served by the plugin
// in its container and its data kept in a storage view of its own. It
// embeds what the host runs, so each field is named once (its JSON name is
// its API and storage name), as runtimeEntry embeds runtime.Runtime.
type mountEntry struct {
	hosting.Mount
	Description string `json:"description"`
}

// hosted is the registered plugin a hosted mount runs: of the plugin type
// this mount hosts (mountKind), so a mount's entry holds only its name.
func (c *catalog) hosted(m *mountEntry) pluginID {
	return pluginID{Type: c.kind.pluginType, Name: m.Plugin}
}

// summary is a mount's key_info.
func (m *mountEntry) summary() map[string]interface{} {
	return map[string]interface{}{"plugin": m.Plugin, "description": m.Description}
}

// validate checks the entry of a mount that hosts plugins of pluginType.
func (m *mountEntry) validate(pluginType string) error {
	if err := validateName("mount", m.Name); err != nil {
		return err
	}
	if m.Plugin == "" {
		return reqerr.BadRequestf("plugin is required: the name of a registered %s plugin to host", pluginType)
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
			return reqerr.BadRequestf("options entry %q is not KEY=VALUE with a non-empty KEY and no NUL byte", k)
		}
	}
	return nil
}
