package runtimecatalog

import (
	"errors"
	"sort"
	"strings"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/hosting"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/reqerr"
)

// mountEntry is a hosted mount: a registered secret container plugin
// mounted under this mount's mounts/NAME/, its requests served by the plugin
// in its container and its data kept in a storage view of its own. It
// embeds what the host runs, so each field is named once (its JSON name is
// its API and storage name), as runtimeEntry embeds runtime.Runtime.
type mountEntry struct {
	hosting.Mount
	Description string `json:"description"`
}

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
		return reqerr.BadRequest(errors.New("plugin is required: the name of a registered secret plugin to host"))
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
