package docker

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// stats are a container's figures from the engine's stats: a stream of
// samples, one a second (from Docker and Podman alike).
type stats struct {
	api API
	id  string
}

// FollowUsage reads the container's stats stream until ctx ends or the
// stream does.
func (s stats) FollowUsage(ctx context.Context, each func(runtime.Usage)) error {
	reader, err := s.api.ContainerStats(ctx, s.id, true)
	if err != nil {
		return gone(err)
	}
	defer reader.Body.Close()
	dec := json.NewDecoder(reader.Body)
	for {
		var sample container.StatsResponse
		if err := dec.Decode(&sample); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return gone(err)
		}
		if sample.Read.IsZero() && sample.PidsStats.Current == 0 {
			continue // the empty sample an exited container sends
		}
		each(UsageFrom(sample))
	}
}

// SampleUsage is one sample, asked now.
func (s stats) SampleUsage(ctx context.Context) (runtime.Usage, error) {
	reader, err := s.api.ContainerStats(ctx, s.id, false)
	if err != nil {
		return runtime.Usage{}, gone(err)
	}
	defer reader.Body.Close()
	var sample container.StatsResponse
	if err := json.NewDecoder(reader.Body).Decode(&sample); err != nil {
		return runtime.Usage{}, err
	}
	return UsageFrom(sample), nil
}

// gone marks the engine's "no such container" as runtime.ErrContainerGone.
func gone(err error) error {
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("%w: %w", runtime.ErrContainerGone, err)
	}
	return err
}

// UsageFrom reads the figures out of an engine's stats. A running
// container always has a process and has used some CPU, so a 0 there is
// the engine having no figure; memory likewise has a limit (the host's
// when none is set).
func UsageFrom(s container.StatsResponse) runtime.Usage {
	u := runtime.Usage{Pids: s.PidsStats.Current, CPUSeconds: float64(s.CPUStats.CPUUsage.TotalUsage) / 1e9}
	m := s.MemoryStats
	if m.Limit == 0 && m.Usage == 0 {
		u.Missing = append(u.Missing, runtime.FigureMemory, runtime.FigureMemoryLimit)
	} else {
		u.MemoryBytes, u.MemoryLimitBytes = m.Usage, m.Limit
		// cgroup v2 names it inactive_file, v1 total_inactive_file; the
		// docker CLI takes the same off.
		inactive, ok := m.Stats["inactive_file"]
		if !ok {
			inactive = m.Stats["total_inactive_file"]
		}
		if inactive < u.MemoryBytes {
			u.MemoryBytes -= inactive
		}
	}
	if s.CPUStats.CPUUsage.TotalUsage == 0 {
		u.Missing = append(u.Missing, runtime.FigureCPU)
	}
	if s.PidsStats.Current == 0 {
		u.Missing = append(u.Missing, runtime.FigurePids)
	}
	return u
}
