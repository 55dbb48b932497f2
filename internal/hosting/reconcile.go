package hosting

import (
	"context"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// StartAll starts every stored mount, at mount and unseal time, so that
// they serve at once and their periodic work runs; a failure is the mount's
// state and reason, and its next request tries again. Before that, the
// containers a dead earlier instance of this plugin left are removed.
func (h *Host) StartAll(ctx context.Context, clusterID string) {
	mounts, err := h.cfg.Store.Mounts(ctx)
	if err != nil {
		h.cfg.Logger.Error("listing hosted mounts", "error", err)
		return
	}
	h.reapOrphans(h.ctx, clusterID, mounts)
	for _, m := range mounts {
		if h.ctx.Err() != nil {
			return // closed meanwhile: Vault sealed or unmounted this mount
		}
		hd, err := h.handle(m)
		if err == nil {
			err = hd.startIdle()
		}
		if err != nil {
			h.cfg.Logger.Error("starting a hosted mount", "mount", m.Name, "error", err)
		}
	}
}

// reapOrphans removes the containers and socket directories that processes
// of this plugin left when they died, on the default engine and those of
// the mounts' runtimes (a Podman service, say).
func (h *Host) reapOrphans(ctx context.Context, clusterID string, mounts []*Mount) {
	if h.cfg.Engines == nil {
		return
	}
	engines := map[string]runtime.Runtime{"": {}}
	for _, m := range mounts {
		if _, rt, err := h.cfg.Store.ToRun(ctx, m.Plugin); err == nil {
			engines[rt.Engine] = rt
		}
	}
	for _, rt := range engines {
		address := h.cfg.Engines.Address(rt)
		if removed, err := h.cfg.Engines.ReapOrphans(ctx, rt, clusterID); err != nil {
			h.cfg.Logger.Warn("removing orphaned plugin containers", "engine", address, "error", err)
		} else if removed > 0 {
			h.cfg.Logger.Info("removed plugin containers of a process that is gone", "engine", address, "count", removed)
		}
	}
	if n := runtime.ReapSocketRoots(); n > 0 {
		h.cfg.Logger.Info("removed the socket directories of processes that are gone", "count", n)
	}
}
