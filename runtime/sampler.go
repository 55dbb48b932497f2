package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/docker/docker/errdefs"
)

// A container's figures are read from a sample its engine streams (one a
// second, from Docker and Podman alike), kept by a sampler for as long as
// the container runs: a reader (GET hosted/NAME, a metrics scrape) gets the
// newest sample at once and never waits on the engine, as Nomad's task
// handles keep theirs.

// sampleMaxAge is how old the newest sample may be before the figures are
// said to be unavailable rather than shown stale.
const sampleMaxAge = 10 * time.Second

// errNoSample is why there are no figures before the engine's first sample.
var errNoSample = errors.New("no sample of the container's figures yet (its engine sends one a second)")

// usageSampler keeps the newest of a container's figures.
type usageSampler struct {
	mu   sync.Mutex
	last Usage
	at   time.Time // when last was taken; zero before the first
	err  error     // why the stream failed, when it did after the last sample
	stop context.CancelFunc
	done chan struct{}
}

// startSampler follows the container's stats stream until stop or its end.
func startSampler(engine StatsEngine, id string) *usageSampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &usageSampler{stop: cancel, done: make(chan struct{})}
	go s.follow(ctx, engine, id)
	return s
}

// follow reads the stream, and asks for it again (after a pause) when the
// engine ends it while the container is still there: an engine restart.
func (s *usageSampler) follow(ctx context.Context, engine StatsEngine, id string) {
	defer close(s.done)
	for ctx.Err() == nil {
		reader, err := engine.ContainerStats(ctx, id, true)
		if err == nil {
			dec := json.NewDecoder(reader.Body)
			for {
				var stats StatsResponse
				if err = dec.Decode(&stats); err != nil {
					break
				}
				if stats.Read.IsZero() && stats.PidsStats.Current == 0 {
					continue // the empty sample an exited container sends
				}
				s.mu.Lock()
				s.last, s.at, s.err = UsageFrom(stats), time.Now(), nil
				s.mu.Unlock()
			}
			reader.Body.Close()
		}
		if errdefs.IsNotFound(err) || ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		s.err = fmt.Errorf("container %s's figures: %w", short(id), err)
		s.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// usage is the newest sample, or why there is none fit to show.
func (s *usageSampler) usage() (Usage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.at.IsZero() && s.err != nil:
		return Usage{}, s.err
	case s.at.IsZero():
		return Usage{}, errNoSample
	case time.Since(s.at) > sampleMaxAge:
		err := fmt.Errorf("the engine's newest sample of the container's figures is %s old", time.Since(s.at).Round(time.Second))
		if s.err != nil {
			err = fmt.Errorf("%w: %w", err, s.err)
		}
		return Usage{}, err
	}
	return s.last, nil
}

// close stops following the stream.
func (s *usageSampler) close() {
	s.stop()
	<-s.done
}

// sampleMemoryBeforeStop records, for a container stopped before its
// handshake under a memory limit, how much memory it was using: a plugin
// starved under its limit may stall and say nothing, and only this tells
// it from one that is merely slow. Asked once, briefly, of the engine.
func (r *Runner) sampleMemoryBeforeStop() {
	select {
	case <-r.handshakeDone:
		return
	case <-r.exited:
		return
	case <-r.abandoned: // the host is closing: no one will read it
		return
	default:
	}
	se, ok := r.engine.(StatsEngine)
	if !ok || r.run.HostConfig.Memory <= 0 || r.memoryAtStop.Load() != 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	reader, err := se.ContainerStats(ctx, r.id, false)
	if err != nil {
		return
	}
	defer reader.Body.Close()
	var stats StatsResponse
	if json.NewDecoder(reader.Body).Decode(&stats) != nil {
		return
	}
	if u := UsageFrom(stats); !slices.Contains(u.Missing, FigureMemory) {
		r.memoryAtStop.Store(u.MemoryBytes)
	}
}
