// A container its engine takes away (a pod deleted from outside) on fake
// plugins: a new one takes over before the old one stops, so no request
// fails and none is sent twice.

package hosting

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// awaitRunning waits until the engine's running containers are want.
func awaitRunning(t *testing.T, e *fakeEngine, want ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !reflect.DeepEqual(e.running(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("running %v, want %v", e.running(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A request in flight when the engine starts taking the container away
// is answered by it; the requests after it go to a new container, started
// before the old one is stopped; the old one stops once its request is
// done. The mount reads as a restart by cause "replaced", and no crash.
func TestLeavingContainerIsReplaced(t *testing.T) {
	hold, held := make(chan struct{}), make(chan struct{}, 1)
	var calls sync.Map // request path to how often the plugin got it
	e := &fakeEngine{handler: func(ctx context.Context, p *fakePlugin, req *logical.Request) (*logical.Response, error) {
		n, _ := calls.LoadOrStore(req.Path, new(int))
		*n.(*int)++
		if req.Path == "slow" {
			held <- struct{}{}
			<-hold
		}
		return &logical.Response{Data: map[string]interface{}{"container": p.id}}, nil
	}}
	// Its request outlasts the stop timeout: a replaced container waits
	// for its requests for their whole limit.
	th := newTestHostWith(t, e, func(c *Config) { c.StopTimeout = 50 * time.Millisecond })
	th.mount(t, "kv", "kv")
	c1 := th.engine.last()

	slow := make(chan string, 1)
	go func() {
		resp, err := th.read(context.Background(), "kv", "slow")
		if err != nil {
			t.Errorf("the request in flight: %v", err)
			slow <- ""
			return
		}
		slow <- resp.Data["container"].(string)
	}()
	<-held
	c1.leave()
	for i := 0; i < 3; i++ {
		if got := containerOf(t)(th.read(context.Background(), "kv", "next")); got != "c2" {
			t.Fatalf("a request after the leave went to %s", got)
		}
	}
	// The old one serves its request in flight: not stopped under it.
	if running := th.engine.running(); !reflect.DeepEqual(running, []string{"c1", "c2"}) {
		t.Fatalf("with a request in flight on c1: running %v", running)
	}
	time.Sleep(200 * time.Millisecond) // past the stop timeout
	if running := th.engine.running(); !reflect.DeepEqual(running, []string{"c1", "c2"}) {
		t.Fatalf("past the stop timeout, with a request in flight on c1: running %v", running)
	}
	close(hold)
	if got := <-slow; got != "c1" {
		t.Fatalf("the request in flight was answered by %q", got)
	}
	awaitRunning(t, th.engine, "c2")
	if n, _ := calls.Load("slow"); *n.(*int) != 1 {
		t.Fatalf("the request in flight reached the plugin %d times", *n.(*int))
	}
	st := th.status(t, "kv")
	health := th.Health(context.Background(), th.store.mounts["kv"])
	if st.State != StateRunning || st.Reason != "" || st.Restarts != 1 || st.ContainerID != "c2" ||
		!reflect.DeepEqual(health.RestartCauses, map[string]int{CauseReplaced: 1}) || len(health.Exits) != 0 {
		t.Fatalf("after the replacement: %+v, %+v", st, health)
	}
	if th.engine.starts() != 2 {
		t.Fatalf("%d starts", th.engine.starts())
	}
}

// Mounts sharing a multiplexed container move to one new container, and
// the old one stops with the last of them to leave it.
func TestLeavingSharedContainer(t *testing.T) {
	th := newTestHost(t, &fakeEngine{multiplexed: true})
	th.mount(t, "a", "kv")
	th.mount(t, "b", "kv")
	c1 := th.engine.last()
	c1.leave()
	if got := containerOf(t)(th.read(context.Background(), "a", "x")); got != "c2" {
		t.Fatalf("a went to %s", got)
	}
	if got := containerOf(t)(th.read(context.Background(), "b", "x")); got != "c2" {
		t.Fatalf("b went to %s", got)
	}
	awaitRunning(t, th.engine, "c2")
	if th.engine.starts() != 2 || !reflect.DeepEqual(th.status(t, "a").Shared, []string{"b"}) {
		t.Fatalf("%d starts, a shares with %v", th.engine.starts(), th.status(t, "a").Shared)
	}
}

// Requests for several mounts of a leaving multiplexed container, arriving
// together while the new one starts, share that one start.
func TestLeavingSharedContainerOneStart(t *testing.T) {
	th := newTestHost(t, &fakeEngine{multiplexed: true})
	for _, name := range []string{"a", "b", "c"} {
		th.mount(t, name, "kv")
	}
	gate := make(chan struct{})
	th.engine.mu.Lock()
	th.engine.startGate = gate
	th.engine.mu.Unlock()
	th.engine.last().leave()
	var wg sync.WaitGroup
	served := make(chan string, 3)
	for _, name := range []string{"a", "b", "c"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := th.read(context.Background(), name, "x")
			if err != nil {
				t.Errorf("%s: %v", name, err)
				return
			}
			served <- resp.Data["container"].(string)
		}()
	}
	time.Sleep(200 * time.Millisecond) // every mount has asked for its replacement by now
	th.engine.mu.Lock()
	gated := th.engine.gated
	th.engine.mu.Unlock()
	close(gate)
	wg.Wait()
	close(served)
	for got := range served {
		if got != "c2" {
			t.Errorf("a mount was served by %s", got)
		}
	}
	if gated != 1 || th.engine.starts() != 2 {
		t.Fatalf("%d starts reached the engine at once, %d in all", gated, th.engine.starts())
	}
	awaitRunning(t, th.engine, "c2")
}

// A container taken away and gone before a request came for it (an idle
// pod whose grace period ran out) is restarted however often that
// happens: no crash loop.
func TestLeftAndGoneIsNoCrash(t *testing.T) {
	th := newTestHost(t, nil)
	th.mount(t, "kv", "kv")
	for i := 0; i < 2*crashLoopCrashes; i++ {
		p := th.engine.last()
		p.kill()
		p.leave()
		if _, err := th.read(context.Background(), "kv", "x"); err != nil {
			t.Fatalf("after leave %d: %v", i+1, err)
		}
	}
	if st := th.status(t, "kv"); st.State != StateRunning || st.Restarts != 2*crashLoopCrashes {
		t.Fatalf("%+v", st)
	}
}

// A mount that no request comes for is replaced all the same, and its
// old container stopped: a pod deleted from outside is not left to its
// grace period's end.
func TestIdleLeavingContainerIsReplaced(t *testing.T) {
	th := newTestHost(t, nil)
	th.mount(t, "kv", "kv")
	th.engine.last().leave()
	awaitRunning(t, th.engine, "c2")
	if st := th.status(t, "kv"); st.State != StateRunning || st.ContainerID != "c2" || st.Restarts != 1 {
		t.Fatalf("%+v", st)
	}
}

// A replacement that fails to start leaves the mount stopped with the
// reason, and the next request starts it.
func TestFailedReplacement(t *testing.T) {
	th := newTestHost(t, nil)
	th.mount(t, "kv", "kv")
	th.engine.mu.Lock()
	th.engine.startErr = errors.New("no such image")
	th.engine.mu.Unlock()
	th.engine.last().leave()
	awaitRunning(t, th.engine)
	if st := th.status(t, "kv"); st.State != StateStopped || st.Reason != "no such image" {
		t.Fatalf("%+v", st)
	}
	th.engine.mu.Lock()
	th.engine.startErr = nil
	th.engine.mu.Unlock()
	if got := containerOf(t)(th.read(context.Background(), "kv", "x")); got != "c2" {
		t.Fatalf("served by %s", got)
	}
}
