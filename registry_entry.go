package runtimecatalog

import (
	"regexp"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/reqerr"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// registryEntry is what a private registry is logged in to with when a
// plugin's image is pulled from it. The password is kept in Vault's storage,
// sealed like any secret, and never returned: a read says only that it is
// set.
type registryEntry struct {
	Registry string `json:"registry"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// registryRegex is a registry as an image reference names it: a host name
// or address, and an optional port.
var registryRegex = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,251}[a-zA-Z0-9])?(:[0-9]{1,5})?$`)

func (r *registryEntry) validate() error {
	if !registryRegex.MatchString(r.Registry) {
		return reqerr.BadRequestf("registry %q is not a registry address: a host name or IP address and an optional port, "+
			"as an image names it (127.0.0.1:5000 in 127.0.0.1:5000/kv-plugin)", r.Registry)
	}
	if r.Username == "" {
		return reqerr.BadRequestf("username is required: the registry's user")
	}
	if r.Password == "" {
		return reqerr.BadRequestf("password is required: the registry user's password or token")
	}
	return nil
}

func (r *registryEntry) toResponseData() map[string]interface{} {
	return map[string]interface{}{"registry": r.Registry, "username": r.Username, "password_set": r.Password != ""}
}

func (r *registryEntry) auth() *runtime.RegistryAuth {
	return &runtime.RegistryAuth{Username: r.Username, Password: r.Password}
}
