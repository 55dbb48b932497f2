package runtime

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// What an exit is said to mean agrees with what the engine reported: a
// SIGKILL is the memory limit's only when the engine reported the OOM
// kill, a kill from outside when it reported none (docker kill), either
// when it reports nothing (Podman); and an exit with no output under a
// limit is not blamed on the limit where the engine would have said so.
func TestExitMeaningAgreesWithTheEngine(t *testing.T) {
	for _, tc := range []struct {
		name             string
		code             int64
		watched          bool // the engine reports OOM kills
		kills            int64
		reason, says     string
		mustNotSay       string
		printedSomething bool
	}{
		{"oom kill", 137, true, 1, ExitMemoryLimit, "SIGKILL from the kernel's OOM killer, as the engine reported: it exceeds its memory limit: memory_bytes 67108864", "", false},
		{"docker kill", 137, true, 0, ExitSignal, "SIGKILL from outside the container, a docker kill say: the engine reported no OOM kill", "exceeds", false},
		{"podman, either", 137, false, 0, ExitMemoryOrSignal, "or a kill from outside; the engine does not say which", "", false},
		{"our own SIGTERM", 143, true, 0, ExitSignal, "killed by signal 15", "memory", false},
		{"silent exit 2, oom not reported", 2, false, 0, ExitOwn, "it printed nothing before it died, under a memory limit", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := limitedState()
			r.WatchingOOM(tc.watched)
			r.oomKills.Store(tc.kills)
			if reason, _ := r.exitReason(tc.code); reason != tc.reason {
				t.Fatalf("reason %q, want %q", reason, tc.reason)
			}
			got := r.exitMeaning(tc.code)
			if !strings.Contains(got, tc.says) || (tc.mustNotSay != "" && strings.Contains(got, tc.mustNotSay)) {
				t.Fatalf("exit %d is said to mean %q; want %q, never %q", tc.code, got, tc.says, tc.mustNotSay)
			}
		})
	}
}

// A plugin stopped at the handshake limit is said to have hit that limit,
// whatever exit code its stop gave it.
func TestHandshakeTimeoutNamesTheLimit(t *testing.T) {
	r := limitedState()
	if !handshakeTimedOut(errors.New("timeout while waiting for plugin to start")) || handshakeTimedOut(errors.New("plugin exited before we could connect")) {
		t.Fatal("go-plugin's handshake timeout is not told apart")
	}
	err := r.HandshakeFailure(30 * time.Second)
	if !errors.Is(err, ErrHandshakeTimeout) || !strings.HasPrefix(err.Error(), "the plugin did not complete its handshake in time: no handshake within 30s (the handshake limit), so it was stopped") ||
		strings.Contains(err.Error(), "exited") || !strings.Contains(err.Error(), "if that is it, it exceeds its memory limit") {
		t.Fatalf("a plugin slow to handshake, with no sample of its memory: %v", err)
	}
	// One that printed something is not said to be starved.
	r.Output().Write([]byte("slow to start\n"))
	if err := r.HandshakeFailure(30 * time.Second); strings.Contains(err.Error(), "memory") {
		t.Fatalf("a plugin slow to handshake that printed: %v", err)
	}
	// One that was using most of its memory limit when stopped is said to
	// be starved, the handshake limit named first.
	r.memoryAtStop.Store(60 << 20)
	err = r.HandshakeFailure(30 * time.Second)
	if !strings.Contains(err.Error(), "no handshake within 30s (the handshake limit)") || !strings.Contains(err.Error(), "it exceeds its memory limit: memory_bytes 67108864") {
		t.Fatalf("a plugin starved under its limit: %v", err)
	}
}

// An exit's output is the plugin's last words: go-plugin's handshake line,
// certificate and all, is not among them.
func TestTheTailLeavesOutTheHandshake(t *testing.T) {
	tail := newLineTail(5)
	tail.Write([]byte("starting\n1|5|unix|/tmp/plugin-dir1/plugin123|grpc|MIIBxTCCAWugAwIBAgIQ\nserving\n"))
	if got := tail.String(); got != "starting\nserving" {
		t.Fatalf("tail = %q", got)
	}
}

// An exit is read once: an oom event that comes after the reading does not
// make the restart's decision, the exit report and the failure's text
// disagree.
func TestAnExitIsReadOnce(t *testing.T) {
	r := limitedState()
	r.WatchingOOM(true)
	first, _ := r.exitReason(137)
	r.OOMKilled() // too late
	if again, _ := r.exitReason(137); again != first || first != ExitSignal {
		t.Fatalf("read %q, then %q", first, again)
	}
}

// limitedState is the record of a start under a 64 MiB memory limit.
func limitedState() *State {
	return NewState(Spec{Plugin: Plugin{Image: "example/kv", Version: "1.0.0"}, Runtime: Runtime{MemoryBytes: 64 << 20}})
}
