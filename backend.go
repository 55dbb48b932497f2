// Package runtimecatalog is a Vault secrets-engine plugin that keeps a catalog
// of plugin runtimes (how containerized plugins are run) and of the container
// plugins that use them, like Vault's sys/plugins/runtimes/catalog.
package runtimecatalog

import (
	"context"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"
)

// Version is the plugin's version, reported to Vault; set at build time.
var Version = "v0.1.0"

const backendHelp = `
The runtime catalog keeps plugin runtimes: how the containers of
containerized Vault plugins are run (OCI runtime, cgroup parent, CPU and
memory limits, rootless Docker), and the container plugins that use them.
It answers like Vault's own sys/plugins/runtimes/catalog and
sys/plugins/catalog, and every path needs the sudo capability.
`

// backend is one mount of the runtime catalog.
type backend struct {
	*framework.Backend

	index *catalogIndex
	// runtimeLocks serialise the writes to one runtime name, so a write is
	// checked and applied without another write to the same name between.
	runtimeLocks []*locksutil.LockEntry
	// pluginLocks do the same for plugins, by "type/name". A separate set:
	// a plugin write holds its plugin lock and then a runtime lock, and
	// shared stripes could make two such writes wait on each other.
	pluginLocks []*locksutil.LockEntry

	docker dockerOnce
}

// Factory creates a new backend for a mount.
func Factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := newBackend()
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	return b, nil
}

func newBackend() *backend {
	b := &backend{
		index:        newCatalogIndex(),
		runtimeLocks: locksutil.CreateLocks(),
		pluginLocks:  locksutil.CreateLocks(),
	}
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
		Invalidate:     b.invalidate,
		Clean:          b.clean,
		RunningVersion: Version,
	}
	return b
}

// invalidate is called by Vault when another node changed a storage key.
func (b *backend) invalidate(_ context.Context, key string) {
	b.index.invalidate(key)
}

// clean releases the Docker client when the mount goes away.
func (b *backend) clean(context.Context) {
	if b.docker.client != nil {
		b.docker.client.Close()
	}
}
