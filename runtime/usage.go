package runtime

import (
	"slices"
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
		if !u.missing(f.Name) {
			out = append(out, f)
		}
	}
	return out
}

// missing reports whether the engine did not give the figure name.
func (u Usage) missing(name string) bool { return slices.Contains(u.Missing, name) }
