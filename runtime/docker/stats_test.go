package docker

import (
	"reflect"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// The figures come out of the engine's stats as docker stats shows them,
// and a figure the engine does not give is named, never shown as 0.
func TestUsageFrom(t *testing.T) {
	full := container.StatsResponse{}
	full.MemoryStats = container.MemoryStats{Usage: 50 << 20, Limit: 128 << 20, Stats: map[string]uint64{"inactive_file": 10 << 20}}
	full.CPUStats.CPUUsage.TotalUsage = 1_500_000_000
	full.PidsStats.Current = 9
	if got, want := UsageFrom(full), (runtime.Usage{MemoryBytes: 40 << 20, MemoryLimitBytes: 128 << 20, CPUSeconds: 1.5, Pids: 9}); !reflect.DeepEqual(got, want) {
		t.Errorf("full stats: %+v, want %+v", got, want)
	}

	v1 := full
	v1.MemoryStats.Stats = map[string]uint64{"total_inactive_file": 20 << 20}
	if got := UsageFrom(v1).MemoryBytes; got != 30<<20 {
		t.Errorf("cgroup v1 stats: memory %d, want %d", got, 30<<20)
	}

	// As Podman rootless answers without the controllers: no memory, CPU
	// or pids figures at all.
	none := container.StatsResponse{}
	if got, want := UsageFrom(none).Missing, []string{runtime.FigureMemory, runtime.FigureMemoryLimit, runtime.FigureCPU, runtime.FigurePids}; !reflect.DeepEqual(got, want) {
		t.Errorf("empty stats: missing %v, want %v", got, want)
	}
}
