package runtime

import (
	"context"
	"strings"
	"time"
)

// Exit is how a plugin's container ended, for an operator looking back.
type Exit struct {
	Time time.Time
	Code int64
	// Reason is one of the Exit* reasons below.
	Reason string
	// Signal is the signal that killed it (Code 128+Signal), when one did.
	Signal int
	// Output is its last lines of output, oldest first.
	Output []string
}

// Exit reasons.
const (
	ExitMemoryLimit = "memory_limit" // killed by the kernel past its memory limit
	ExitPanicked    = "panicked"     // a Go panic or fatal error (code 2)
	ExitSignal      = "signal"       // killed by a signal: docker kill, a stop past its grace
	// killed by SIGKILL under a memory limit, on an engine that does not
	// say whether the kernel sent it (Podman)
	ExitMemoryOrSignal = "memory_limit_or_signal"
	ExitOwn            = "exited" // ended on its own, with Code
)

// Exit reports how the container ended, once it has.
func (r *Running) Exit() (Exit, bool) {
	if r.state == nil {
		return Exit{}, false
	}
	return r.state.ExitReport()
}

// ExitReport is how the container ended, once it has.
func (s *State) ExitReport() (Exit, bool) {
	done, code := s.Exited()
	if !done || s.waitErr != nil {
		return Exit{}, false
	}
	e := Exit{Time: s.exitedAt, Code: code}
	e.Reason, e.Signal = s.exitReason(code)
	if out := s.output(); out != "" {
		e.Output = strings.Split(out, "\n")
	}
	return e, true
}

// exitReason is the one reading of an exit code, which the exit report,
// MemoryKilled and Panicked share.
func (s *State) exitReason(code int64) (reason string, signal int) {
	// Read once: the reading may wait for the engine's oom event, and the
	// exit report, the restart's decision and the failure's text must all
	// say the same.
	s.reasonsMu.Lock()
	defer s.reasonsMu.Unlock()
	if settled, ok := s.reasons[code]; ok {
		return settled.reason, settled.signal
	}
	reason, signal = s.readExit(code)
	if s.reasons == nil {
		s.reasons = map[int64]settledExit{}
	}
	s.reasons[code] = settledExit{reason, signal}
	return reason, signal
}

// settledExit is an exit's reading, once made.
type settledExit struct {
	reason string
	signal int
}

func (s *State) readExit(code int64) (reason string, signal int) {
	limited := s.spec.Runtime.MemoryBytes > 0
	switch {
	case code == 137 && limited && s.memoryKilled():
		return ExitMemoryLimit, 9
	case code == 137 && limited && !s.oomReported():
		// Podman sends no oom event: a SIGKILL under a memory limit is the
		// kernel's, or a kill from outside, and nothing says which.
		return ExitMemoryOrSignal, 9
	case code == 2 && s.tail.Panic() != "":
		return ExitPanicked, 0
	case code > 128 && code < 128+65:
		return ExitSignal, int(code - 128)
	}
	return ExitOwn, 0
}

// oomReported reports whether the engine tells memory kills apart.
func (s *State) oomReported() bool { return s.oomWatched.Load() }

// memoryKilled reports whether the kernel's OOM killer ended the
// container: its oom event, which the Docker Engine sends before the exit
// (seen under runc and runsc) but on a stream of its own, so it is waited
// for briefly. Asked only of a SIGKILL under a memory limit: a restart
// after any other exit waits for nothing.
func (s *State) memoryKilled() bool {
	if !s.oomReported() {
		return false
	}
	for i := 0; i < 100 && s.oomKills.Load() == 0; i++ { // a second at most: under load the event comes late
		time.Sleep(10 * time.Millisecond)
	}
	return s.oomKills.Load() > 0
}

// Usage is the container's figures from the newest sample its engine
// sent (sampler.go): it never waits on the engine.
func (r *Running) Usage(context.Context) (Usage, error) {
	if r.sampler == nil {
		return Usage{Missing: []string{FigureMemory, FigureMemoryLimit, FigureCPU, FigurePids}}, nil
	}
	return r.sampler.usage()
}

// OOMKills is how many times the kernel's OOM killer acted in the
// container, and whether its engine reports that at all (Podman does not).
func (r *Running) OOMKills() (int64, bool) { return r.state.OOMKills() }
