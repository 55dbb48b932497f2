package runtime

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// State is the one record of a plugin container's life, whatever its
// engine: the engine fills it in (its output, its exit, published once, its
// OOM kills, the timings of its start) and everything else reads it (the
// start's failure report, the exit report, the restart's decision). Its
// readings of an exit are made here, once, so that every engine's plugins
// are explained in the same words.
type State struct {
	spec Spec
	tail *lineTail

	// exited is closed when the container has exited and its output is
	// read; code and waitErr are set before.
	exited   chan struct{}
	exitOnce sync.Once
	code     int64
	waitErr  error
	exitedAt time.Time
	// startErr is the engine's reason when it refused to start the
	// container: it says more than the exit code that comes with it.
	startErr error
	// handshook is set once go-plugin's handshake completed.
	handshook atomic.Bool
	// givenUp is closed by GiveUp (a kill, a stop, a removal not seen in
	// time): waits cut short by the engine are not asked again after that.
	givenUp  chan struct{}
	giveOnce sync.Once
	// abandoned is closed when the start is given up (Abandon);
	// handshakeDone when go-plugin's handshake completed (Connected).
	abandoned     chan struct{}
	abandonOnce   sync.Once
	handshakeDone chan struct{}
	connectOnce   sync.Once
	// memoryAtStop is the memory a container stopped before its handshake
	// was using then, under a memory limit (0: not sampled).
	memoryAtStop atomic.Uint64
	// oomWatched: the engine reports the kernel's OOM kills in the
	// container; oomKills counts them.
	oomWatched atomic.Bool
	oomKills   atomic.Int64
	// leaving is closed once the engine said the container is being taken
	// away (Leave).
	leaving   chan struct{}
	leaveOnce sync.Once
	// reasons are the exit's readings, by code, once made (exitReason).
	reasonsMu sync.Mutex
	reasons   map[int64]settledExit

	// id is the container's, once the engine made it.
	id atomic.Value
	// Pulled, Created and Started are how long the pull (when there was
	// one), the create and the start took; the engine sets them.
	Pulled, Created, Started time.Duration
}

// logTailLines is how many of the container's last output lines a failure
// report quotes.
const logTailLines = 20

// OutputGrace bounds how long an exit's publication waits for the last of
// the output; an engine that waits for a removal after an exit waits a
// little longer, or the two timers race.
const OutputGrace = 2 * time.Second

// NewState is the record of a start of spec.
func NewState(spec Spec) *State {
	return &State{
		spec: spec, tail: newLineTail(logTailLines),
		exited: make(chan struct{}), givenUp: make(chan struct{}), abandoned: make(chan struct{}), handshakeDone: make(chan struct{}),
		leaving: make(chan struct{}),
	}
}

// Output is where the engine writes the container's output, stdout and
// stderr alike: its last lines are kept for the reports.
func (s *State) Output() io.Writer { return s.tail }

// LastOutput is the last lines of output.
func (s *State) LastOutput() string { return s.tail.String() }

// SetID records the container's ID, once the engine made it ("" once it
// is gone without ever having run).
func (s *State) SetID(id string) { s.id.Store(id) }

// ID is the container's ID, "" before the engine made it.
func (s *State) ID() string {
	id, _ := s.id.Load().(string)
	return id
}

// PublishExit records the container's end: its exit code, or waitErr when
// the engine could not say. The exit can be reported before the last
// output is read, and a failure report quotes it, so it waits for
// outputDone (closed at the output's end; nil when there is none), up to
// OutputGrace. Only the first call counts.
func (s *State) PublishExit(code int64, waitErr error, outputDone <-chan struct{}) {
	s.exitOnce.Do(func() {
		s.code, s.waitErr, s.exitedAt = code, waitErr, time.Now()
		if outputDone != nil {
			select {
			case <-outputDone:
			case <-time.After(OutputGrace):
			}
		}
		close(s.exited)
	})
}

// Done is closed once the exit is published.
func (s *State) Done() <-chan struct{} { return s.exited }

// Exited reports whether the container has ended, and its exit code.
func (s *State) Exited() (bool, int64) {
	select {
	case <-s.exited:
		return true, s.code
	default:
		return false, 0
	}
}

// Wait waits for the container to end; a non-zero exit code is an error
// (go-plugin's runner.Wait).
func (s *State) Wait(ctx context.Context) error {
	select {
	case <-s.exited:
	case <-ctx.Done():
		return ctx.Err()
	}
	if s.waitErr != nil {
		return s.waitErr
	}
	if s.code != 0 {
		return fmt.Errorf("%w with code %d", ErrContainerExited, s.code)
	}
	return nil
}

// Refused records the engine's refusal to start the container, and
// returns it: the failure report says it rather than the exit.
func (s *State) Refused(err error) error {
	s.startErr = err
	return err
}

// Abandon gives the start up: a container not created yet never is, and
// one waiting for its handshake is stopped.
func (s *State) Abandon() { s.abandonOnce.Do(func() { close(s.abandoned) }) }

// StopIfAbandoned runs stop if the start is abandoned before the handshake
// completes or the container ends: an engine calls it once its container
// runs, so a start given up never leaves it running.
func (s *State) StopIfAbandoned(stop func()) {
	go func() {
		select {
		case <-s.abandoned:
			stop()
		case <-s.handshakeDone:
		case <-s.exited:
		}
	}()
}

// Abandoned is closed once the start is given up.
func (s *State) Abandoned() <-chan struct{} { return s.abandoned }

// Connected records that go-plugin's handshake completed: Abandon no
// longer applies.
func (s *State) Connected() {
	s.connectOnce.Do(func() {
		s.handshook.Store(true)
		close(s.handshakeDone)
	})
}

// HandshakeDone is closed once the handshake completed.
func (s *State) HandshakeDone() <-chan struct{} { return s.handshakeDone }

// GiveUp ends the waits that an engine cut short and that are asked again
// meanwhile: the container is being killed, or was given up on. It may be
// called more than once.
func (s *State) GiveUp() { s.giveOnce.Do(func() { close(s.givenUp) }) }

// GivenUp is closed once GiveUp was called.
func (s *State) GivenUp() <-chan struct{} { return s.givenUp }

// Leave records that the engine is taking the container away from
// outside (a pod being deleted, its grace period running): it still
// serves the requests in flight, and the host sends it no new ones.
func (s *State) Leave() { s.leaveOnce.Do(func() { close(s.leaving) }) }

// Leaving is closed once Leave was called.
func (s *State) Leaving() <-chan struct{} { return s.leaving }

// WatchingOOM records whether the engine reports the kernel's OOM kills in
// the container (Docker's oom events do; Podman's API sends none).
func (s *State) WatchingOOM(on bool) { s.oomWatched.Store(on) }

// OOMKilled records one OOM kill the engine reported.
func (s *State) OOMKilled() { s.oomKills.Add(1) }

// OOMKills is how many times the kernel's OOM killer acted in the
// container, and whether the engine reports it at all.
func (s *State) OOMKills() (int64, bool) { return s.oomKills.Load(), s.oomWatched.Load() }

// SampleMemoryBeforeStop records, for a container about to be stopped
// before its handshake under a memory limit, how much memory it is using:
// a plugin starved under its limit may stall and say nothing, and only
// this tells it from one that is merely slow. Asked once, briefly.
func (s *State) SampleMemoryBeforeStop(source UsageSource) {
	select {
	case <-s.handshakeDone:
		return
	case <-s.exited:
		return
	case <-s.abandoned: // the host is closing: no one will read it
		return
	default:
	}
	if source == nil || s.spec.Runtime.MemoryBytes <= 0 || s.memoryAtStop.Load() != 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	u, err := source.SampleUsage(ctx)
	if err == nil && !u.missing(FigureMemory) {
		s.memoryAtStop.Store(u.MemoryBytes)
	}
}
