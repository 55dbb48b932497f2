// Package runtimecatalog is a Vault secrets-engine plugin that keeps a catalog
// of plugin runtimes (how containerized plugins are run) and of the container
// plugins that use them, like Vault's sys/plugins/runtimes/catalog.
package runtimecatalog

import (
	"context"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// Version is the plugin's version, reported to Vault; set at build time.
var Version = "v0.1.0"

// operationPrefix starts every operation ID in the plugin's OpenAPI.
const operationPrefix = "runtime-catalog"

const backendHelp = `
The runtime catalog keeps plugin runtimes: how the containers of
containerized Vault plugins are run (OCI runtime, cgroup parent, CPU and
memory limits, rootless Docker), and the container plugins that use them.
It answers like Vault's own sys/plugins/runtimes/catalog and
sys/plugins/catalog, and every path needs the sudo capability.
`

// backend is one mount of the runtime catalog. Its handlers parse requests
// and shape answers; the catalog owns the state and its rules.
type backend struct {
	*framework.Backend

	catalog     *catalog
	runtimeList listBodyCache // the encoded runtime list, per catalog generation
	docker      engineOnce
}

// Factory creates a new backend for a mount.
func Factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := newBackend(conf.StorageView)
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	return b, nil
}

// newBackend makes a backend whose catalog lives in s, the mount's storage
// (for an external plugin, the same connection back to Vault as every
// request's storage).
func newBackend(s logical.Storage) *backend {
	b := &backend{catalog: newCatalog(s)}
	b.Backend = &framework.Backend{
		Help:        strings.TrimSpace(backendHelp),
		BackendType: logical.TypeLogical,
		PathsSpecial: &logical.Paths{
			// Root paths need the sudo capability, as Vault's own catalog does.
			Root: []string{"catalog", "catalog/*", "plugins/catalog", "plugins/catalog/*"},
		},
		// run-config and check come before the plugin path, whose name
		// pattern would take them in: the first matching pattern wins.
		Paths:          append(append(pathCatalog(b), pathPluginRun(b)...), pathPlugins(b)...),
		Invalidate:     func(_ context.Context, key string) { b.catalog.invalidate(key) },
		Clean:          b.clean,
		RunningVersion: Version,
	}
	return b
}

// clean releases the Docker client when the mount goes away.
func (b *backend) clean(context.Context) {
	if b.docker.client != nil {
		b.docker.client.Close()
	}
}
