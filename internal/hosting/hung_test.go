// Plugins that stop answering, on fake plugins: every wait on them is
// bounded.

package hosting

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"google.golang.org/grpc/status"
)

// hang is a handler for mount "hung" whose plugin stops answering, as a
// paused container does: its calls end only when their context does or the
// container is stopped. Other mounts answer.
func hang(ctx context.Context, p *fakePlugin, req *logical.Request) (*logical.Response, error) {
	if req.MountPoint != "runtimes/mounts/hung/" {
		return &logical.Response{Data: map[string]interface{}{"container": p.id}}, nil
	}
	p.hanging.Add(1)
	defer p.hanging.Add(-1)
	select {
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	case <-p.stopCh:
		return nil, errGone
	}
}

// A plugin that stops answering gets its requests an error within the
// request timeout, naming the mount; other mounts serve meanwhile, and the
// mount's status does not wait on it.
func TestHungPluginAnswersWithinTheRequestTimeout(t *testing.T) {
	th := newTestHostWith(t, &fakeEngine{handler: hang}, func(c *Config) { c.RequestTimeout = 300 * time.Millisecond })
	th.mount(t, "hung", "kv")
	th.mount(t, "ok", "kv")
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := th.read(context.Background(), "hung", "x")
			if code, _ := codeOf(err); code != 504 || err.Error() != "hosted mount hung is not answering: its plugin did not answer within 300ms" {
				t.Errorf("a request to a hung plugin: %v", err)
			}
		}()
	}
	if _, err := th.read(context.Background(), "ok", "x"); err != nil {
		t.Errorf("another mount, while one hangs: %v", err)
	}
	if st := th.status(t, "hung"); st.State != StateRunning {
		t.Errorf("status while hung: %+v", st)
	}
	wg.Wait()
	if st := th.status(t, "hung"); th.engine.starts() != 2 || st.Restarts != 0 {
		t.Fatalf("a plugin that did not answer was restarted: %d starts, %+v", th.engine.starts(), st)
	}
}

// Deleting or reloading a mount whose plugin hangs does not wait on it
// longer than the stop timeout: its requests in flight end with it, and
// are not sent again.
func TestStoppingAHungPluginIsBounded(t *testing.T) {
	for _, op := range []string{"delete", "reload"} {
		t.Run(op, func(t *testing.T) {
			th := newTestHostWith(t, &fakeEngine{handler: hang}, func(c *Config) {
				c.RequestTimeout, c.StopTimeout = time.Hour, 20*time.Millisecond
			})
			m := th.mount(t, "hung", "kv")
			errs := make(chan error, 4)
			for i := 0; i < 4; i++ {
				go func() { _, err := th.read(context.Background(), "hung", "x"); errs <- err }()
			}
			for inFlight(th, "hung") < 4 {
				time.Sleep(time.Millisecond)
			}
			switch op {
			case "delete":
				if err := th.Remove(context.Background(), m, false, "runtimes/"); err != nil {
					t.Fatal(err)
				}
			case "reload":
				if failures := th.Reload(context.Background(), []string{"hung"}); len(failures) != 0 {
					t.Fatal(failures)
				}
				if st := th.status(t, "hung"); st.State != StateRunning || st.ContainerID != "c2" {
					t.Fatalf("after the reload: %+v", st)
				}
				if err := th.Remove(context.Background(), m, false, "runtimes/"); err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < 4; i++ {
				err := <-errs
				// They reached the plugin: not sent again, to the new
				// container or anywhere.
				if code, _ := codeOf(err); code != 502 || !strings.Contains(err.Error(), "not sent again") {
					t.Errorf("a request in flight across the %s: %v", op, err)
				}
			}
			if running := th.engine.running(); len(running) != 0 {
				t.Fatalf("after the %s: running %v", op, running)
			}
		})
	}
}

// inFlight is how many requests the mount's newest container holds hung.
func inFlight(th *testHost, _ string) int {
	if th.engine.starts() == 0 {
		return 0
	}
	return int(th.engine.last().hanging.Load())
}

// An invalidation the plugin does not answer holds up nothing: not the
// mount's other requests, nor its delete.
func TestHungInvalidationIsBounded(t *testing.T) {
	e := &fakeEngine{invalidate: func(ctx context.Context) { <-ctx.Done() }}
	th := newTestHostWith(t, e, func(c *Config) { c.RequestTimeout, c.StopTimeout = 100*time.Millisecond, 20*time.Millisecond })
	m := th.mount(t, "kv", "kv")
	done := make(chan struct{})
	go func() { th.Invalidate(context.Background(), m.UUID, "k"); close(done) }()
	if _, err := th.read(context.Background(), "kv", "x"); err != nil {
		t.Fatalf("a request during a hung invalidation: %v", err)
	}
	if err := th.Remove(context.Background(), m, false, "runtimes/"); err != nil {
		t.Fatal(err)
	}
	<-done
}
