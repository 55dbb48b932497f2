package runtime

import (
	"context"
	"time"

	"github.com/hashicorp/go-uuid"
	"github.com/hashicorp/vault/sdk/logical"
)

// CheckResult is what a successful check measured.
type CheckResult struct {
	ID            string // the container's (or pod's)
	PluginVersion string
	Pulled        time.Duration // the pull, when the image had to be pulled
	Created       time.Duration // the engine's create
	Started       time.Duration // the engine's start
	Handshake     time.Duration // from the start until go-plugin's handshake completed
	Total         time.Duration // everything, stopping and removal included
}

// Check starts the plugin, sets up a backend in it (with storage of its own,
// in memory), asks its version and stops it, timing each step.
func Check(ctx context.Context, engine Engine, p Plugin, r Runtime, o Options) (*CheckResult, error) {
	began := time.Now()
	running, err := start(ctx, engine, p, r, o)
	if err != nil {
		return nil, err
	}
	defer running.Stop(ctx)
	id, err := uuid.GenerateUUID()
	if err != nil {
		return nil, err
	}
	o = o.withDefaults()
	backend, err := running.Backend(ctx, id, &logical.BackendConfig{
		StorageView: &logical.InmemStorage{}, Logger: o.Logger, BackendUUID: id,
		System: logical.StaticSystemView{VersionString: o.VaultVersion},
	})
	if err != nil {
		return nil, err
	}
	result := &CheckResult{
		ID:        running.ID(),
		Pulled:    running.state.Pulled,
		Created:   running.state.Created,
		Started:   running.state.Started,
		Handshake: running.Handshake,
	}
	if versioner, ok := backend.(logical.PluginVersioner); ok {
		result.PluginVersion = versioner.PluginVersion().Version
	}
	backend.Cleanup(ctx)
	running.Stop(ctx)
	result.Total = time.Since(began)
	return result, nil
}
