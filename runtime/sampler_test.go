package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
)

// streamEngine streams the samples the test writes, as an engine's stats
// stream does, and counts the streams asked for.
type streamEngine struct {
	asked atomic.Int32
	w     *io.PipeWriter
	r     *io.PipeReader
}

func (e *streamEngine) ContainerStats(ctx context.Context, _ string, stream bool) (container.StatsResponseReader, error) {
	if !stream {
		return container.StatsResponseReader{}, errors.New("asked for a single sample")
	}
	e.asked.Add(1)
	go func() { <-ctx.Done(); e.r.CloseWithError(ctx.Err()) }()
	return container.StatsResponseReader{Body: e.r}, nil
}

// Readers get the newest sample, never a call to the engine: one stream is
// asked for, however often the figures are read; before the first sample
// they are unavailable, saying why, never 0.
func TestFiguresComeFromTheNewestSample(t *testing.T) {
	r, w := io.Pipe()
	e := &streamEngine{r: r, w: w}
	s := startSampler(e, "c1")
	if _, err := s.usage(); !errors.Is(err, errNoSample) {
		t.Fatalf("before the first sample: %v", err)
	}
	enc := json.NewEncoder(w)
	for _, mem := range []uint64{10 << 20, 20 << 20} {
		sample := container.StatsResponse{Read: time.Now()}
		sample.MemoryStats.Usage, sample.MemoryStats.Limit = mem, 64<<20
		sample.PidsStats.Current = 7
		sample.CPUStats.CPUUsage.TotalUsage = 5e8
		if err := enc.Encode(sample); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if u, err := s.usage(); err == nil && u.MemoryBytes == 20<<20 {
			if u.Pids != 7 || u.CPUSeconds != 0.5 || u.MemoryLimitBytes != 64<<20 {
				t.Fatalf("figures %+v", u)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the newest sample was never read")
		}
	}
	for i := 0; i < 100; i++ {
		s.usage()
	}
	if n := e.asked.Load(); n != 1 {
		t.Fatalf("%d streams asked for", n)
	}
	s.close() // returns once the sampler has stopped
}
