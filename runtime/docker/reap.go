package docker

import (
	"context"
	"fmt"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/errdefs"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// ReapOrphans removes the plugin containers of this project's that were
// started for clusterID by a process of this machine that is gone
// (runtime.Orphaned). It returns the IDs removed.
func (e *Engine) ReapOrphans(ctx context.Context, clusterID string) ([]string, error) {
	api, err := e.client()
	if err != nil {
		return nil, err
	}
	list, err := api.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", runtime.LabelManagedBy+"="+runtime.ManagedByThisPlugin),
		filters.Arg("label", runtime.LabelClusterID+"="+clusterID),
	)})
	if err != nil {
		return nil, fmt.Errorf("listing plugin containers: %w", err)
	}
	var removed []string
	for _, c := range list {
		if !runtime.Orphaned(c.Labels) {
			continue
		}
		err := api.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
		if err != nil && !errdefs.IsNotFound(err) && !strings.Contains(err.Error(), "already in progress") {
			return removed, fmt.Errorf("removing orphaned container %s: %w", runtime.Short(c.ID), err)
		}
		removed = append(removed, c.ID)
	}
	return removed, nil
}
