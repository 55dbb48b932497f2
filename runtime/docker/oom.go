package docker

import (
	"context"
	"sync"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// oomWatch tells a memory kill from any other SIGKILL (a docker kill, a
// stop past its grace), which the exit code (137) alone cannot: the Docker
// Engine sends an "oom" event when the kernel's OOM killer acts in a
// container's cgroup (runc and runsc alike). Podman's Docker-compatible
// API sends none, so there it is not watched, and an exit says it cannot
// tell.
type oomWatch struct {
	stop context.CancelFunc
	mu   sync.Mutex
}

// watch follows the container's oom events until stopWatch, recording them
// in st.
func (w *oomWatch) watch(api API, st *runtime.State, id string, podman bool) {
	if podman {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.mu.Lock()
	w.stop = cancel
	w.mu.Unlock()
	msgs, errs := api.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)), filters.Arg("container", id), filters.Arg("event", string(events.ActionOOM)))})
	st.WatchingOOM(true)
	go func() {
		for {
			select {
			case m := <-msgs:
				if m.Action == events.ActionOOM {
					st.OOMKilled()
				}
			case <-errs: // the stream ended: the engine went away, or stopWatch
				st.WatchingOOM(ctx.Err() != nil) // what was seen until stopWatch holds
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
