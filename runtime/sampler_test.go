package runtime

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// streamSource streams the samples the test sends, as an engine's stats
// stream does, and counts the streams asked for.
type streamSource struct {
	asked   atomic.Int32
	samples chan Usage
}

func (e *streamSource) FollowUsage(ctx context.Context, each func(Usage)) error {
	e.asked.Add(1)
	for {
		select {
		case u := <-e.samples:
			each(u)
		case <-ctx.Done():
			return nil
		}
	}
}

func (e *streamSource) SampleUsage(context.Context) (Usage, error) {
	return Usage{}, errors.New("asked for a single sample")
}

// Readers get the newest sample, never a call to the engine: one stream is
// asked for, however often the figures are read; before the first sample
// they are unavailable, saying why, never 0.
func TestFiguresComeFromTheNewestSample(t *testing.T) {
	e := &streamSource{samples: make(chan Usage)}
	s := startSampler(e, "c1")
	if _, err := s.usage(); !errors.Is(err, errNoSample) {
		t.Fatalf("before the first sample: %v", err)
	}
	for _, mem := range []uint64{10 << 20, 20 << 20} {
		e.samples <- Usage{MemoryBytes: mem, MemoryLimitBytes: 64 << 20, Pids: 7, CPUSeconds: 0.5}
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
