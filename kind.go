package runtimecatalog

import (
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/reqerr"
)

// mountKind is what Vault mounted this plugin as: a secrets engine (`vault
// secrets enable`) or an auth method (`vault auth enable`). Vault and
// OpenBao pass it to Factory as plugin_type in the mount's config. It
// decides two things, here alone: the backend type the mount reports
// (Vault refuses to mount as an auth method a backend that says it is a
// secrets engine), and which registered plugins its hosted mounts run.
// Vault creates a token only from an auth mount's answer on one of its
// login (unauthenticated) paths, and refuses auth in a secrets engine's
// answer, so an auth plugin can be hosted only under an auth mount; a
// secrets engine's leases are revoked through a secrets mount only.
type mountKind struct {
	pluginType  string // of the plugins it hosts: "secret" or "auth"
	backendType logical.BackendType
	enable      string // the CLI command that mounts this plugin so
	tune        string // the CLI command that tunes such a mount (its path without auth/)
	// registered is the name this plugin is registered under in Vault's
	// catalog, for the commands messages name.
	registered string
}

// defaultRegisteredName is the name the README registers this plugin under.
const defaultRegisteredName = "vault-plugin-runtime-catalog"

// kindOf is the kind of a mount whose config Vault passed to Factory. A
// mount config without plugin_type (a test's, an old server's) is a
// secrets engine's, as every mount of this plugin was before auth mounts.
func kindOf(config map[string]string) mountKind {
	name := config["plugin_name"]
	if name == "" {
		name = defaultRegisteredName
	}
	if config["plugin_type"] == "auth" {
		return mountKind{"auth", logical.TypeCredential, "vault auth enable", "vault auth tune", name}
	}
	return mountKind{"secret", logical.TypeLogical, "vault secrets enable", "vault secrets tune", name}
}

// hosts checks that a plugin registered as pluginType (in this catalog) is
// one this mount can host, and says which mount can when it is not.
func (k mountKind) hosts(pluginType, plugin string) error {
	switch {
	case pluginType == k.pluginType:
		return nil
	case pluginType == "database":
		return reqerr.BadRequestf("plugin %q is registered as database: database plugins cannot be hosted, "+
			"since they speak Vault's database plugin protocol, which only Vault's database secrets engine serves", plugin)
	default:
		other := kindOf(map[string]string{"plugin_type": pluginType, "plugin_name": k.registered})
		return reqerr.BadRequestf("plugin %q is registered as %s, not %s: %s plugins are hosted by %s mount of this plugin "+
			"(vault plugin register -sha256=SHA256 %s %s, then %s -path=NAME %s)",
			plugin, pluginType, k.pluginType, pluginType, other.noun(), pluginType, k.registered, other.enable, k.registered)
	}
}

// hostsOne reports whether a mount of this kind hosts at most one mount.
// An auth mount does: Vault gives every token made through it this
// mount's accessor, and keys entity aliases (and group aliases, and MFA
// enforcement) by accessor and name, so two hosted auth methods under one
// would share their users' identities: alice of one identity provider
// would be the entity of alice of the other.
func (k mountKind) hostsOne() bool { return k.pluginType == "auth" }

// hostsOneOnly refuses hosting want beside existing on a mount that hosts
// one.
func (k mountKind) hostsOneOnly(existing, want string) error {
	return reqerr.BadRequestf("this auth mount hosts %q already, and an auth mount of this plugin hosts one auth method: "+
		"every login through it gets this mount's accessor, and Vault keys entity aliases by accessor and name, so a user "+
		"of %q would be the same entity as the user of that name of %q; host %q on an auth mount of its own (%s -path=NAME %s)",
		existing, want, existing, want, k.enable, k.registered)
}

// noun names the kind of mount, with its article.
func (k mountKind) noun() string {
	if k.pluginType == "auth" {
		return "an auth"
	}
	return "a secrets"
}
