package runtimecatalog

import (
	"regexp"
	"strings"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/reqerr"
)

// maxNameLength bounds runtime and plugin names: they become storage keys and
// container labels, and nobody needs a longer one.
const maxNameLength = 128

// nameRegex is Vault's framework.GenericNameRegex, anchored: word characters,
// with '-' and '.' allowed only inside the name.
var nameRegex = regexp.MustCompile(`^\w(([\w.-]+)?\w)?$`)

// validateName checks a runtime or plugin name; kind is "runtime" or "plugin".
func validateName(kind, name string) error {
	if name == "" {
		return reqerr.BadRequestf("missing %s name", kind)
	}
	// Storage refuses a key with ".." anywhere (a relative path).
	if len(name) > maxNameLength || !nameRegex.MatchString(name) || strings.Contains(name, "..") {
		return reqerr.BadRequestf("invalid %s name %q: a name has at most %d characters, "+
			"letters, digits and '_', with '-' and '.' allowed only inside it, and no '..'", kind, name, maxNameLength)
	}
	return nil
}
