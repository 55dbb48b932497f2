package runtime

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
)

// eventsEngine is an engine that streams its events, as the Docker Engine
// does: it reports an "oom" event when the kernel's OOM killer acts in a
// container's cgroup (runc and runsc alike).
type eventsEngine interface {
	Events(ctx context.Context, options events.ListOptions) (<-chan events.Message, <-chan error)
}

// oomWatch tells a memory kill from any other SIGKILL (a docker kill, a
// stop past its grace), which the exit code (137) alone cannot. Podman's
// Docker-compatible API sends no oom event, so there it is not watched, and
// an exit says it cannot tell.
type oomWatch struct {
	watched atomic.Bool
	kills   atomic.Int64
	stop    context.CancelFunc
	mu      sync.Mutex
}

// watch follows the container's oom events until stopWatch.
func (w *oomWatch) watch(engine Engine, id string, podman bool) {
	ee, ok := engine.(eventsEngine)
	if !ok || podman {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.mu.Lock()
	w.stop = cancel
	w.mu.Unlock()
	msgs, errs := ee.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)), filters.Arg("container", id), filters.Arg("event", string(events.ActionOOM)))})
	w.watched.Store(true)
	go func() {
		for {
			select {
			case m := <-msgs:
				if m.Action == events.ActionOOM {
					w.kills.Add(1)
				}
			case <-errs: // the stream ended: the engine went away, or stopWatch
				w.watched.Store(ctx.Err() != nil) // what was seen until stopWatch holds
				return
			}
		}
	}()
}

// stopWatch ends the watch (the container is removed).
func (w *oomWatch) stopWatch() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stop != nil {
		w.stop()
	}
}

// OOMKills is how many times the kernel's OOM killer acted in the
// container, and whether the engine reports it at all.
func (r *Runner) OOMKills() (int64, bool) {
	return r.oom.kills.Load(), r.oom.watched.Load()
}
