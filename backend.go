// Package runtimecatalog is a Vault secrets-engine plugin that keeps a catalog
// of plugin runtimes (how containerized plugins are run) and of the container
// plugins that use them, like Vault's sys/plugins/runtimes/catalog.
package runtimecatalog

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/helper/pluginutil"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/hosting"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/reqerr"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
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
sys/plugins/catalog, and every path needs the sudo capability. It hosts
registered plugins under mounts/NAME/: secrets engines when mounted as a
secrets engine, auth methods when mounted as an auth method.
`

// backend is one mount of the runtime catalog. Its handlers parse requests
// and shape answers; the catalog owns the state and its rules.
type backend struct {
	*framework.Backend

	catalog     *catalog
	host        *hosting.Host // made in Setup, with the mount's logger and system view
	runtimeList listBodyCache // the encoded runtime list, per catalog generation
	engines     runtime.Engines
	metrics     *prometheus.Registry // what GET metrics reports (path_metrics.go)
	multiplexID string               // set when served by Serve
	// standby: this instance runs on a standby node that serves reads
	// (OpenBao's Raft standbys do by default; Vault Enterprise's
	// performance standbys too). It forwards every request to the active
	// node and starts no container: see HandleRequest.
	standby bool
}

var _ logical.Backend = (*backend)(nil)

// Factory creates a new backend for a mount.
func Factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := newBackendOf(conf.StorageView, kindOf(conf.Config))
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	// A node changes between standby and active only through a teardown
	// of every mount (Clean) and a new Factory, so the state read now
	// holds for this instance's life.
	b.standby = conf.System != nil && conf.System.ReplicationState().HasState(consts.ReplicationPerformanceStandby)
	// Vault reads the special paths right after this, before Initialize:
	// the hosted mounts' paths must be known from storage by then. A load
	// that fails leaves them unpublished, which refuses every mount whose
	// plugin declares some (pending_reload: never less protected than it
	// should be), and the next access loads again.
	if err := b.catalog.ensure(ctx); err != nil {
		b.Logger().Warn("loading the catalog at mount time", "error", err)
	}
	// What Vault enforces for the hosted mounts when it started this
	// process without reading the paths (the last one died): those the
	// last instance published.
	// Not on a standby or a performance secondary: the record is the
	// active node's, or the primary's, not what this node's Vault read.
	secondary := conf.System != nil && conf.System.ReplicationState().HasState(consts.ReplicationPerformanceSecondary)
	if b.standby || secondary {
		// nothing: mounts whose plugin declares paths wait for a reload
	} else if err := b.host.LoadPublished(ctx); err != nil {
		b.Logger().Warn("loading the special paths Vault enforces", "error", err)
	}
	// Vault set this backend up under a multiplexing ID: requests carrying
	// it find the backend when they are passed through (serve.go).
	if id, err := pluginutil.GetMultiplexIDFromContext(ctx); err == nil {
		b.multiplexID = id
		instances.Store(id, b)
	}
	backends.Store(b, struct{}{})
	return b, nil
}

// newBackend makes a backend whose catalog lives in s, the mount's storage
// (for an external plugin, the same connection back to Vault as every
// request's storage).
func newBackend(s logical.Storage) *backend { return newBackendOf(s, kindOf(nil)) }

// newBackendOf is a backend for a mount of kind k: an auth mount is a
// credential backend, whose hosted auth plugins' login answers Vault turns
// into tokens.
func newBackendOf(s logical.Storage, k mountKind) *backend {
	b := &backend{catalog: newCatalogOf(s, k), engines: runtime.Engines{Dial: dialEngine}}
	b.Backend = &framework.Backend{
		Help:        strings.TrimSpace(backendHelp),
		BackendType: k.backendType,
		PathsSpecial: &logical.Paths{
			// Root paths need the sudo capability, as Vault's own catalog
			// does, and as sys/mounts does for a mount's settings
			// (hosted/NAME). A hosted mount's data (mounts/NAME/...) is not
			// among them: the token's ACL governs it, as for a Vault mount,
			// and the host adds only its plugin's own special paths.
			Root: []string{"catalog", "catalog/*", "plugins/catalog", "plugins/catalog/*", "plugins/reload", "hosted", "hosted/*", "config", "registries", "registries/*"},
		},
		// run-config and check come before the plugin path, whose name
		// pattern would take them in: the first matching pattern wins.
		Paths: slices.Concat(pathCatalog(b), pathPluginRun(b), pathPlugins(b), pathMounts(b), pathConfig(b), pathRegistries(b), pathMetrics(b)),
		Invalidate: func(ctx context.Context, key string) {
			if uuid, rest, ok := hostedKey(key); ok {
				// Dropped from the cache first: the hosted plugin's own
				// invalidation reads the key again.
				b.catalog.hostedCache.Invalidate(uuid, rest)
				b.host.Invalidate(ctx, uuid, rest)
				return // a hosted mount's own data: nothing of the catalog's
			}
			b.catalog.invalidate(key)
			if name, ok := mountOfKey(key); ok {
				b.host.Refresh(ctx, name) // changed or deleted on another node
			}
		},
		InitializeFunc: b.initialize,
		Clean:          b.clean,
		RunningVersion: Version,
	}
	return b
}

// Setup also makes the host of the hosted mounts, which needs the mount's
// logger and system view.
func (b *backend) Setup(ctx context.Context, conf *logical.BackendConfig) error {
	if err := b.Backend.Setup(ctx, conf); err != nil {
		return err
	}
	b.host = hosting.New(hosting.Config{
		Store: hostStore{b.catalog}, Start: b.startHosted, System: b.System, Engines: hostEngines{b},
		Observations: conf.ObservationRecorder,
		Logger:       b.Logger().Named("hosted"),
	})
	b.metrics = b.newMetricsRegistry()
	return nil
}

// HandleRequest serves the hosted mounts' paths by their plugins, and the
// rest by this backend; Vault's periodic rollback reaches every hosted
// backend too.
func (b *backend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	if b.standby {
		return standbyAnswer(req)
	}
	if name, rest, ok := hosting.SplitPath(req.Path); ok {
		resp, err := b.host.Forward(ctx, name, rest, req)
		if err != nil && resp == nil {
			return reqerr.Respond(err)
		}
		if err == nil {
			return wrappable(req, resp)
		}
		// The plugin's own error response (kv's check-and-set mismatch:
		// logical.ErrorResponse with ErrInvalidRequest) goes back whole.
		return resp, err
	}
	resp, err := b.Backend.HandleRequest(ctx, req)
	if req.Operation == logical.RollbackOperation {
		b.host.Rollback(ctx, req)
	}
	if err == nil && resp == nil {
		// The framework warns of ignored fields only on a response: a write
		// answered with 204 would hide that a misspelled limit was not set.
		if ignored := b.ignoredFields(req); len(ignored) > 0 {
			resp = &logical.Response{}
			resp.AddWarning(fmt.Sprintf("Endpoint ignored these unrecognized parameters: %v", ignored))
		}
	}
	return resp, err
}

// standbyAnswer sends every request on a read-serving standby to the
// active node: ErrReadOnly is the error the server forwards on. Only the
// active node runs the hosted mounts' containers, and only its catalog
// index is sure to hold the latest write (a standby's storage trails the
// leader's), so a read here could answer an older catalog than the write
// the same client just made. Vault's own standbys forward everything too.
func standbyAnswer(req *logical.Request) (*logical.Response, error) {
	if req.Operation == logical.RollbackOperation {
		return nil, nil // nothing of this mount's is rolled back on a standby
	}
	return nil, logical.ErrReadOnly
}

// ignoredFields are the request's fields that its path does not know.
func (b *backend) ignoredFields(req *logical.Request) []string {
	route := b.Route(req.Path)
	if route == nil || req.Operation == logical.HelpOperation {
		return nil
	}
	return unknownKeys(req.Data, route.Fields)
}

// HandleExistenceCheck asks a hosted plugin about its own paths.
func (b *backend) HandleExistenceCheck(ctx context.Context, req *logical.Request) (bool, bool, error) {
	if b.standby {
		// The server does not forward on an existence check's error (it
		// answers 500), only on the request's: the catalog's own check reads
		// storage, which a standby may; a hosted plugin runs only on the
		// active node, so its paths go on as updates, and the active node
		// checks again once the request is forwarded.
		if _, _, hosted := hosting.SplitPath(req.Path); hosted {
			return false, false, nil
		}
		return b.Backend.HandleExistenceCheck(ctx, req)
	}
	if name, rest, ok := hosting.SplitPath(req.Path); ok {
		return b.host.ExistenceCheck(ctx, name, rest, req)
	}
	return b.Backend.HandleExistenceCheck(ctx, req)
}

// SpecialPaths are this backend's plus those of every hosted mount stored
// now; Vault reads them when it mounts, unseals or reloads this mount.
func (b *backend) SpecialPaths() *logical.Paths {
	mounts, err := b.catalog.Mounts(context.Background())
	if err != nil {
		b.Logger().Warn("reading the hosted mounts for their special paths", "error", err)
		mounts = nil
	}
	return b.host.SpecialPaths(b.Backend.SpecialPaths(), hostingMounts(mounts))
}

// initialize starts the hosted mounts in the background: Vault calls it
// while mounting or unsealing, which must not wait for containers. A
// request to a mount not started yet starts it itself.
func (b *backend) initialize(ctx context.Context, _ *logical.InitializationRequest) error {
	if b.standby {
		return nil // the active node runs them
	}
	clusterID, _ := b.System().ClusterID(ctx)
	go b.host.StartAll(context.Background(), clusterID)
	return nil
}

// clean stops every hosted mount and container, and releases the Docker
// client, when Vault unmounts, seals, reloads or stops this mount.
func (b *backend) clean(ctx context.Context) {
	if b.multiplexID != "" {
		instances.CompareAndDelete(b.multiplexID, b)
	}
	backends.Delete(b)
	b.host.Close(ctx)
	b.engines.Close()
}
