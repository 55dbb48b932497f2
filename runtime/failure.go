package runtime

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Failure explains why the plugin is gone, or is not answering. When the
// container exited, its exit code and last output say it all, and
// go-plugin's own "Unrecognized remote plugin message" is left out; else the
// cause is kept, with the last output if go-plugin did not quote it.
func (s *State) Failure(cause error) error {
	if s.startErr != nil {
		return s.startErr
	}
	tail := s.tail.String()
	if done, code := s.Exited(); done && s.waitErr == nil {
		when := "before the plugin handshake"
		if s.handshook.Load() {
			when = "after the plugin handshake"
		}
		return fmt.Errorf("%w with code %d%s %s; last output:\n%s", ErrContainerExited, code, s.exitMeaning(code), when, s.output())
	}
	if tail == "" || strings.Contains(cause.Error(), tail) {
		return cause
	}
	return fmt.Errorf("%w; the container's last output:\n%s", cause, tail)
}

// output is the last lines of output, after the first line of a Go panic
// if one was seen and has left the tail since.
func (s *State) output() string {
	tail := s.tail.String()
	if p := s.tail.Panic(); p != "" && !strings.Contains(tail, p) {
		tail = p + "\n...\n" + tail
	}
	return tail
}

// exitMeaning explains an exit code the container's own output may not,
// from the one reading of it (exitReason): a SIGKILL is said to be the
// memory limit's only when the engine reported the kernel's OOM kill, a
// kill from outside when it reported none, and either when it reports
// nothing (Podman).
func (s *State) exitMeaning(code int64) string {
	limit := s.spec.Runtime.MemoryBytes
	reason, _ := s.exitReason(code)
	switch {
	case reason == ExitMemoryLimit:
		return fmt.Sprintf(" (SIGKILL from the kernel's OOM killer, as the engine reported: it exceeds its memory limit: memory_bytes %d)", limit)
	case reason == ExitMemoryOrSignal:
		return fmt.Sprintf(" (SIGKILL: the kernel's, past its memory limit (memory_bytes %d), or a kill from outside; "+
			"the engine does not say which)", limit)
	case code == 137 && s.oomKills.Load() > 0:
		return " (SIGKILL from the kernel's OOM killer, as the engine reported)"
	case code == 137 && s.oomReported():
		return " (SIGKILL from outside the container, a docker kill say: the engine reported no OOM kill)"
	case code == 137:
		return " (SIGKILL)"
	case limit > 0 && s.oomKills.Load() > 0:
		// The OOM killer took a thread or child and the plugin died of it
		// another way (a Go runtime that could not allocate exits 2).
		return fmt.Sprintf(" (the engine reported the kernel's OOM killer in the container, as for a container that exceeds its memory limit: memory_bytes %d)", limit)
	case reason == ExitSignal:
		return fmt.Sprintf(" (killed by signal %d)", code-128)
	case code != 0 && limit > 0 && !s.handshook.Load() && s.tail.String() == "":
		// Seen under a 6 MiB limit, now and then: exit code 2 with not a
		// line printed and no oom event, as a Go program that cannot get
		// the memory its runtime starts with dies before it can say so.
		// (A plugin this host stopped at the handshake limit is said to
		// have hit that limit before this is asked: handshakeFailure.)
		return fmt.Sprintf(" (it printed nothing before it died, under a memory limit: a plugin that cannot get the memory it starts with dies so; "+
			"if that is it, it exceeds its memory limit: memory_bytes %d)", limit)
	}
	return ""
}

// ErrHandshakeTimeout is a plugin that did not complete go-plugin's
// handshake within the start's limit: it was stopped, by this host.
var ErrHandshakeTimeout = errors.New("the plugin did not complete its handshake in time")

// handshakeTimedOut reports whether go-plugin gave up waiting for the
// plugin's handshake line.
func handshakeTimedOut(err error) bool {
	return err != nil && strings.Contains(err.Error(), "timeout while waiting for plugin to start")
}

// HandshakeFailure explains a start stopped at the handshake limit: the
// limit that was hit, not the exit its stop caused.
func (s *State) HandshakeFailure(limit time.Duration) error {
	last := "; it printed nothing"
	if out := s.output(); out != "" {
		last = "; its last output:\n" + out
	}
	memLimit, used := s.spec.Runtime.MemoryBytes, s.memoryAtStop.Load()
	switch {
	case memLimit <= 0:
	case used*10 >= uint64(memLimit)*8:
		last = fmt.Sprintf("; it was using %d bytes of its memory limit when stopped, and a plugin that cannot get the memory it needs "+
			"stalls so: it exceeds its memory limit: memory_bytes %d", used, memLimit) + last
	case s.output() == "":
		// A plugin starved under its limit may stall silently, its pages
		// reclaimed as fast as it reads them (its usage then looks low):
		// the limit is named as a possible cause, never as what ended it.
		last += fmt.Sprintf(", under a memory limit: a plugin that cannot get the memory it starts with stalls so; "+
			"if that is it, it exceeds its memory limit: memory_bytes %d", memLimit)
	}
	return fmt.Errorf("%w: no handshake within %s (the handshake limit), so it was stopped (%s)%s", ErrHandshakeTimeout, limit, s.spec.What(), last)
}

// ExplainCall explains a call to the plugin that failed: when the
// container has exited (or does within OutputGrace), its exit code and last
// output say why, not the broken connection the caller saw.
func (s *State) ExplainCall(cause error) error {
	select {
	case <-s.exited:
	case <-time.After(OutputGrace):
		return cause
	}
	return s.Failure(cause)
}

// handshakeLine is go-plugin's handshake line (core version, app version,
// network, address, protocol, and with AutoMTLS the server certificate).
var handshakeLine = regexp.MustCompile(`^\d+\|\d+\|(unix|tcp)\|`)

// lineTail keeps the last n lines written to it, from any stream, but
// go-plugin's handshake line.
type lineTail struct {
	mu      sync.Mutex
	n       int
	lines   []string
	partial string
	// panic is the first line of a Go panic or fatal error seen, however
	// long ago: its goroutine dump pushes it out of the tail.
	panic string
}

func newLineTail(n int) *lineTail { return &lineTail{n: n} }

func (t *lineTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	text := t.partial + string(p)
	parts := strings.Split(text, "\n")
	t.partial = parts[len(parts)-1]
	for _, line := range parts[:len(parts)-1] {
		if handshakeLine.MatchString(line) {
			continue // go-plugin's, with the plugin's certificate: not the plugin's words
		}
		t.lines = append(t.lines, line)
		if t.panic == "" && (strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ")) {
			t.panic = line
		}
	}
	if over := len(t.lines) - t.n; over > 0 {
		t.lines = append([]string(nil), t.lines[over:]...)
	}
	return len(p), nil
}

// Panic is the first line of a Go panic or fatal error in the output, if
// there was one.
func (t *lineTail) Panic() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.panic
}

func (t *lineTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := t.lines
	if t.partial != "" {
		lines = append(append([]string(nil), lines...), t.partial)
	}
	return strings.Join(lines, "\n")
}
