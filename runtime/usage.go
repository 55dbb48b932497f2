package runtime

import (
	"context"
	"slices"

	"github.com/docker/docker/api/types/container"
)

// Usage is what a running container uses now, as its engine reports it.
// A figure the engine does not give (Podman rootless has no CPU or memory
// controller delegated to it, for one) is named in Missing and left 0:
// it must be shown as unknown, never as 0.
type Usage struct {
	// MemoryBytes is the memory in use, less the inactive page cache the
	// kernel reclaims before it kills (what `docker stats` shows).
	MemoryBytes uint64
	// MemoryLimitBytes is the limit the kernel enforces; without one set,
	// the engine reports the host's memory.
	MemoryLimitBytes uint64
	// CPUSeconds is the CPU time the container used since it started.
	CPUSeconds float64
	// Pids is the number of processes and threads in the container.
	Pids uint64
	// Missing names the figures above that the engine did not give.
	Missing []string
}

// Figure names, as the hosted mount's read and Missing say them.
const (
	FigureMemory      = "memory_bytes"
	FigureMemoryLimit = "memory_limit_bytes"
	FigureCPU         = "cpu_seconds"
	FigurePids        = "pids"
)

// Figure is one of Usage's figures, by its name.
type Figure struct {
	Name  string
	Value float64
}

// Figures are the figures the engine gave, by name, in a fixed order; the
// missing ones are left out.
func (u Usage) Figures() []Figure {
	var out []Figure
	for _, f := range []Figure{{FigureMemory, float64(u.MemoryBytes)}, {FigureMemoryLimit, float64(u.MemoryLimitBytes)},
		{FigureCPU, u.CPUSeconds}, {FigurePids, float64(u.Pids)}} {
		if !slices.Contains(u.Missing, f.Name) {
			out = append(out, f)
		}
	}
	return out
}

// StatsEngine is the part of an engine Usage needs: the stream of a
// container's stats samples (sampler.go).
type StatsEngine interface {
	ContainerStats(ctx context.Context, id string, stream bool) (container.StatsResponseReader, error)
}

// StatsResponse is one sample of a container's stats, as its engine sends it.
type StatsResponse = container.StatsResponse

// UsageFrom reads the figures out of an engine's stats. A running
// container always has a process and has used some CPU, so a 0 there is
// the engine having no figure; memory likewise has a limit (the host's
// when none is set).
func UsageFrom(s container.StatsResponse) Usage {
	u := Usage{Pids: s.PidsStats.Current, CPUSeconds: float64(s.CPUStats.CPUUsage.TotalUsage) / 1e9}
	m := s.MemoryStats
	if m.Limit == 0 && m.Usage == 0 {
		u.Missing = append(u.Missing, FigureMemory, FigureMemoryLimit)
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
		u.Missing = append(u.Missing, FigureCPU)
	}
	if s.PidsStats.Current == 0 {
		u.Missing = append(u.Missing, FigurePids)
	}
	return u
}
