package runtime

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
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

// startSampler follows the container's figures until close or its end.
func startSampler(source UsageSource, id string) *usageSampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &usageSampler{stop: cancel, done: make(chan struct{})}
	go s.follow(ctx, source, id)
	return s
}

// follow reads the samples, and asks for them again (after a pause) when
// the engine ends the stream while the container is still there: an engine
// restart.
func (s *usageSampler) follow(ctx context.Context, source UsageSource, id string) {
	defer close(s.done)
	for ctx.Err() == nil {
		err := source.FollowUsage(ctx, func(u Usage) {
			s.mu.Lock()
			s.last, s.at, s.err = u, time.Now(), nil
			s.mu.Unlock()
		})
		if errors.Is(err, ErrContainerGone) || ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		s.err = fmt.Errorf("container %s's figures: %w", Short(id), err)
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
