// Package wire is what the host and a pod's carrier say to each other
// beside the plugin's session, where both sides read it.
package wire

import "time"

// StatsRequest is the line (then a newline) that asks the carrier for the
// plugin container's figures: it answers with a Stats, as one line of
// JSON, at once and then every StatsInterval, until the connection ends.
const StatsRequest = "STATS"

// StatsInterval is how often the carrier sends a sample, as Docker does.
const StatsInterval = time.Second

// Stats is one sample of the plugin container's figures, as the carrier
// reads them in the container's cgroup. Missing names those it could not
// read (the names below, which are the runtime package's figure names).
// Pod is the carrier's host name, its pod's name: the host holds it to the
// pod it asked, as a pod's IP may be another's soon after it ends.
type Stats struct {
	Pod              string   `json:"pod"`
	MemoryBytes      uint64   `json:"memory_bytes"`
	MemoryLimitBytes uint64   `json:"memory_limit_bytes"`
	CPUSeconds       float64  `json:"cpu_seconds"`
	Pids             uint64   `json:"pids"`
	Missing          []string `json:"missing,omitempty"`
}

// The figures' names, in Stats' JSON and its Missing.
const (
	FigureMemory      = "memory_bytes"
	FigureMemoryLimit = "memory_limit_bytes"
	FigureCPU         = "cpu_seconds"
	FigurePids        = "pids"
)
