package hosting

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// keepExits is how many of a mount's last exits its read shows.
const keepExits = 5

// Restart causes, besides the exit reasons of runtime (memory_limit,
// panicked, signal, exited, memory_limit_or_signal).
const (
	// CauseGone: the container was found gone and the engine said nothing
	// of how it ended (it was removed, or its engine restarted).
	CauseGone = "gone"
	// CauseReplaced: the engine was taking the container away (a pod
	// deleted from outside): a new one took over, and the old one finished
	// its requests in flight.
	CauseReplaced = "replaced"
)

// history is what a mount's containers did: how the last ones ended, its
// restarts by cause, its failed starts and the kernel's OOM kills. It has
// a lock of its own, so that reads and scrapes never wait on a start.
type history struct {
	mu           sync.Mutex
	exits        []runtime.Exit // oldest first
	restarts     map[string]int // by cause
	failedStarts int
	// oomKills of the containers that ended; the running one's are asked
	// of it. Unknown when the engine does not report them.
	oomKills      int64
	oomReported   bool
	oomUnreported bool // some container's engine did not say
}

// noteExit records how run's container ended, once however many times it
// is found gone, and logs it at error level with the mount, exit code and
// last output: a plugin's death is never only a debug line.
func (hd *handle) noteExit(run *running, cause string) {
	run.exitOnce.Do(func() {
		p := run.container.plugin
		e, ok := p.Exit()
		kills, reported := p.OOMKills()
		h := &hd.hist
		h.mu.Lock()
		if ok {
			h.exits = append(h.exits, e)
			if len(h.exits) > keepExits {
				h.exits = h.exits[len(h.exits)-keepExits:]
			}
			run.exitReason = e.Reason
		} else {
			run.exitReason = CauseGone
		}
		if reported {
			h.oomKills += kills
			h.oomReported = true
		} else {
			h.oomUnreported = true
		}
		run.noted.Store(true)
		h.mu.Unlock()
		if ok {
			hd.host.cfg.Logger.Error("hosted plugin exited", "mount", hd.name, "container", p.ID(),
				"exit_code", e.Code, "reason", e.Reason, "output", strings.Join(e.Output, "\n"))
		} else {
			hd.host.cfg.Logger.Error("hosted plugin is gone", "mount", hd.name, "container", p.ID(), "cause", cause)
		}
	})
}

// restarted counts a restart after run's container ended, or was
// replaced, by cause.
func (h *history) restarted(cause string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.restarts == nil {
		h.restarts = map[string]int{}
	}
	h.restarts[cause]++
}

func (h *history) failedStart() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failedStarts++
}

// Health is what GET hosted/NAME adds about the mount's container: its
// figures now, and how its last containers ended.
type Health struct {
	// Usage is the running container's, when one runs; its Missing names
	// what the engine does not give. UsageError is why there is none.
	Usage      *runtime.Usage
	UsageError string
	// OOMKills is the kernel's count over the mount's containers; when
	// OOMKillsKnown is false the engine does not report them (Podman).
	OOMKills      int64
	OOMKillsKnown bool
	Exits         []runtime.Exit // newest first
	RestartCauses map[string]int
	FailedStarts  int
}

// usageTimeout bounds one stats question to an engine, for a read or a
// scrape.
const usageTimeout = 3 * time.Second

// health is the mount's Health; the engine is asked for the running
// container's figures.
func (hd *handle) health(ctx context.Context) Health {
	var run *running
	switch {
	case hd.mu.TryRLock():
		run = hd.run
		hd.mu.RUnlock()
	case hd.starting.Load():
		// A start holds the mount: no container of it to ask yet, and
		// the read does not wait for it.
	default:
		hd.mu.RLock()
		run = hd.run
		hd.mu.RUnlock()
	}
	h := hd.hist.snapshot(run)
	if run != nil && !run.exited() {
		ctx, cancel := context.WithTimeout(ctx, usageTimeout)
		defer cancel()
		u, err := run.container.plugin.Usage(ctx)
		if err != nil {
			h.UsageError = err.Error()
		} else {
			h.Usage = &u
		}
	}
	return h
}

// snapshot copies the history, with the OOM kills of run's container
// unless its exit counted them already.
func (h *history) snapshot(run *running) Health {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := Health{OOMKills: h.oomKills, OOMKillsKnown: !h.oomUnreported, FailedStarts: h.failedStarts, RestartCauses: map[string]int{}}
	for i := len(h.exits) - 1; i >= 0; i-- {
		out.Exits = append(out.Exits, h.exits[i])
	}
	for cause, n := range h.restarts {
		out.RestartCauses[cause] = n
	}
	if run != nil && !run.noted.Load() {
		kills, reported := run.container.plugin.OOMKills()
		out.OOMKills += kills
		if !reported {
			out.OOMKillsKnown = false
		}
	}
	return out
}

// Health is a stored mount's figures and history; a mount not started
// since this plugin started has no history and no figures.
func (h *Host) Health(ctx context.Context, m *Mount) Health {
	hd, err := h.handle(m)
	if err != nil {
		return Health{UsageError: err.Error(), RestartCauses: map[string]int{}}
	}
	return hd.health(ctx)
}
