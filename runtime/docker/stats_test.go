package docker

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"
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

// streamAPI streams the samples the test writes, as the engine's stats
// stream does; a container it does not have is not found.
type streamAPI struct {
	memEngine
	r *io.PipeReader
}

func (e *streamAPI) ContainerStats(ctx context.Context, id string, stream bool) (container.StatsResponseReader, error) {
	if id != "c1" {
		return container.StatsResponseReader{}, errdefs.NotFound(errors.New("No such container: " + id))
	}
	go func() { <-ctx.Done(); e.r.CloseWithError(ctx.Err()) }()
	return container.StatsResponseReader{Body: e.r}, nil
}

// The stats stream gives every sample's figures, skips the empty sample an
// exited container sends, ends without an error when its context does,
// and a container the engine does not have is runtime.ErrContainerGone.
func TestStatsFollowTheStream(t *testing.T) {
	r, w := io.Pipe()
	api := &streamAPI{r: r}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan runtime.Usage, 4)
	done := make(chan error, 1)
	go func() { done <- (stats{api, "c1"}).FollowUsage(ctx, func(u runtime.Usage) { got <- u }) }()
	enc := json.NewEncoder(w)
	sample := container.StatsResponse{Read: time.Now()}
	sample.MemoryStats.Usage, sample.MemoryStats.Limit = 20<<20, 64<<20
	sample.PidsStats.Current = 7
	sample.CPUStats.CPUUsage.TotalUsage = 5e8
	for _, s := range []container.StatsResponse{{}, sample} {
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
	}
	if u := <-got; u.MemoryBytes != 20<<20 || u.Pids != 7 || u.CPUSeconds != 0.5 {
		t.Fatalf("first figures %+v (the empty sample was not skipped?)", u)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("the stream's end with its context: %v", err)
	}
	if err := (stats{api, "gone"}).FollowUsage(context.Background(), func(runtime.Usage) {}); !errors.Is(err, runtime.ErrContainerGone) {
		t.Fatalf("a container the engine does not have: %v", err)
	}
}
