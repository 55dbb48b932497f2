// Requests on fake plugins: serving, restarts before a request, what is
// sent again and what never is, and what reaches the hosted plugin.

package hosting

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestStartAndServe(t *testing.T) {
	th := newTestHost(t, nil)
	th.mount(t, "kv", "kv")
	resp, err := th.read(context.Background(), "kv", "data/x")
	if err != nil || resp.Data["path"] != "data/x" || resp.Data["mount_point"] != "runtimes/mounts/kv/" {
		t.Fatalf("the plugin saw %v (%v); want its own path and mount point", resp, err)
	}
	st := th.status(t, "kv")
	if st.State != StateRunning || st.ContainerID != "c1" || st.Restarts != 0 || st.Started.IsZero() {
		t.Fatalf("status %+v", st)
	}
	b := th.engine.last().backends[th.store.mounts["kv"].UUID]
	if b.conf.BackendUUID == "" || b.conf.Config["plugin_name"] != "kv" || b.conf.Config["plugin_type"] != "secret" {
		t.Fatalf("backend config %+v", b.conf)
	}
}

// A request whose client hung up ends with Canceled from gRPC: that is the
// request's end, not the plugin's, and nothing restarts.
func TestCancelledRequestsNeverRestart(t *testing.T) {
	e := &fakeEngine{handler: func(ctx context.Context, _ *fakePlugin, _ *logical.Request) (*logical.Response, error) {
		<-ctx.Done()
		return nil, status.Error(codes.Canceled, "context canceled")
	}}
	th := newTestHost(t, e)
	th.mount(t, "kv", "kv")
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
			defer cancel()
			if _, err := th.read(ctx, "kv", "data/x"); status.Code(err) != codes.Canceled {
				t.Errorf("a cancelled request answered %v", err)
			}
		}()
	}
	wg.Wait()
	if st := th.status(t, "kv"); th.engine.starts() != 1 || st.State != StateRunning || st.Restarts != 0 {
		t.Fatalf("after 50 cancelled requests: %d starts, %+v", th.engine.starts(), st)
	}
}

// Starts run under the host's context, bounded, never a request's.
func TestStartsRunUnderTheHostsContext(t *testing.T) {
	th := newTestHost(t, nil)
	th.mount(t, "kv", "kv")
	th.engine.last().kill()
	type key struct{}
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "request"))
	if _, err := th.read(ctx, "kv", "x"); err != nil {
		t.Fatal(err)
	}
	cancel()
	for i, sc := range th.engine.startCtxs {
		if _, ok := sc.Deadline(); !ok || sc.Value(key{}) != nil {
			t.Errorf("start %d ran under a request's context, or unbounded", i+1)
		}
	}
}

// A plugin found dead is restarted once, however many requests saw it.
func TestOneRestartPerDeath(t *testing.T) {
	th := newTestHost(t, nil)
	th.mount(t, "kv", "kv")
	th.engine.last().kill()
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp, err := th.read(context.Background(), "kv", "x"); err != nil || resp.Data["container"] != "c2" {
				t.Errorf("a read after the kill: %v %v", resp, err)
			}
		}()
	}
	wg.Wait()
	if st := th.status(t, "kv"); th.engine.starts() != 2 || st.Restarts != 1 || st.ContainerID != "c2" {
		t.Fatalf("8 requests after one death: %d starts, %+v", th.engine.starts(), st)
	}
	// The dead container's cleanup runs in the background, not holding up
	// the restart.
	for deadline := time.Now().Add(5 * time.Second); !reflect.DeepEqual(th.engine.running(), []string{"c2"}); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("running %v", th.engine.running())
		}
	}
}

// A request that may have reached the plugin is never sent again: the
// plugin below applies a write (a counter) and then dies, as the hostile
// run's did. The request answers 502 saying so, the counter went up once,
// one container died and one exit is listed, and it counts as one death.
// The next request restarts the plugin.
func TestGoneMidRequestIsNeverSentAgain(t *testing.T) {
	var applied atomic.Int32
	e := &fakeEngine{}
	e.handler = func(_ context.Context, p *fakePlugin, req *logical.Request) (*logical.Response, error) {
		if req.Path == "count-and-exit" {
			applied.Add(1)
			p.kill()
			return nil, errGone
		}
		return &logical.Response{Data: map[string]interface{}{"container": p.id}}, nil
	}
	th := newTestHost(t, e)
	th.mount(t, "kv", "kv")
	_, err := th.read(context.Background(), "kv", "count-and-exit")
	if code, _ := codeOf(err); code != 502 || !strings.Contains(err.Error(), "this request is not sent again, as it may have reached the plugin and been applied") {
		t.Fatalf("a request during which the plugin exited: %v", err)
	}
	if n := applied.Load(); n != 1 {
		t.Fatalf("the write was applied %d times", n)
	}
	if n := th.engine.starts(); n != 1 {
		t.Fatalf("%d starts before the next request; want 1 (nothing sent again)", n)
	}
	if c := containerOf(t)(th.read(context.Background(), "kv", "x")); c != "c2" {
		t.Fatalf("the next request was answered by %s", c)
	}
	hd, _ := th.Host.lookup(context.Background(), "kv")
	hd.mu.RLock()
	crashes, exits := hd.crash.crashes, len(hd.hist.exits)
	hd.mu.RUnlock()
	if crashes != 1 || exits != 1 || th.engine.starts() != 2 {
		t.Fatalf("one death counted as %d crashes, %d exits listed, %d starts", crashes, exits, th.engine.starts())
	}
}

// A request refused before it left (the plugin was already gone, its
// connection closed) is sent to the restarted plugin, once; the restart
// and the request share the request's time.
func TestNeverSentIsSentToTheRestartedPlugin(t *testing.T) {
	var calls atomic.Int32
	e := &fakeEngine{handler: func(_ context.Context, p *fakePlugin, _ *logical.Request) (*logical.Response, error) {
		calls.Add(1)
		return &logical.Response{Data: map[string]interface{}{"container": p.id}}, nil
	}}
	th := newTestHost(t, e)
	th.mount(t, "kv", "kv")
	// Its connection is gone, its exit not seen yet: the call is refused
	// before it leaves.
	th.engine.last().connGone.Store(true)
	if c := containerOf(t)(th.read(context.Background(), "kv", "x")); c != "c2" || calls.Load() != 1 {
		t.Fatalf("a request that never left was answered by %s after %d calls", c, calls.Load())
	}
	if n := th.engine.starts(); n != 2 {
		t.Fatalf("%d starts; want 2", n)
	}
}

// An answer over the bound is refused by gRPC before it is read; the
// request gets a 502 naming the bound and where it is set, and the plugin,
// which did nothing wrong but answer, serves on.
func TestAnswerOverTheBound(t *testing.T) {
	e := &fakeEngine{}
	e.handler = func(_ context.Context, p *fakePlugin, req *logical.Request) (*logical.Response, error) {
		if req.Path == "huge" {
			return nil, status.Error(codes.ResourceExhausted, "grpc: received message larger than max (314572800 vs. 67108864)")
		}
		return &logical.Response{Data: map[string]interface{}{"container": p.id}}, nil
	}
	th := newTestHost(t, e)
	th.mount(t, "kv", "kv")
	_, err := th.read(context.Background(), "kv", "huge")
	want := "hosted mount kv answered more than the bound on a hosted answer (max_hosted_response_bytes, at runtimes/config), " +
		"and was refused before it was read: grpc: received message larger than max (314572800 vs. 67108864)"
	if code, _ := codeOf(err); code != 502 || err.Error() != want {
		t.Fatalf("an answer over the bound: %v", err)
	}
	if c := containerOf(t)(th.read(context.Background(), "kv", "x")); c != "c1" || th.engine.starts() != 1 {
		t.Fatalf("after it: served by %s, %d starts", c, th.engine.starts())
	}
}

type recorder struct{ seen []string }

func (r *recorder) RecordObservationFromPlugin(_ context.Context, observationType string, _ map[string]interface{}) error {
	r.seen = append(r.seen, observationType)
	return nil
}

// A hosted plugin's observations go to this mount's recorder, Vault's.
func TestObservationsReachVault(t *testing.T) {
	rec := &recorder{}
	th := newTestHostWith(t, nil, func(c *Config) { c.Observations = rec })
	m := th.mount(t, "kv", "kv")
	b := th.engine.last().backends[m.UUID]
	if b.conf.ObservationRecorder != rec {
		t.Fatalf("the hosted backend records to %v", b.conf.ObservationRecorder)
	}
}

// Requests queued behind a start: one whose client left starts nothing,
// and those behind a start that failed share its answer rather than each
// start again.
func TestRequestsQueuedBehindAStart(t *testing.T) {
	th := newTestHost(t, nil)
	th.mount(t, "kv", "kv")
	gate := make(chan struct{})
	th.engine.mu.Lock()
	th.engine.startGate, th.engine.startErr = gate, errors.New("pull access denied for example/kv")
	th.engine.mu.Unlock()
	th.engine.last().kill()

	first := make(chan error, 1)
	go func() { _, err := th.read(context.Background(), "kv", "x"); first <- err }()
	for waiting(th.engine) < 1 {
		time.Sleep(time.Millisecond)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	queued := make(chan error, 6)
	go func() { _, err := th.read(cancelled, "kv", "x"); queued <- err }()
	for i := 0; i < 5; i++ {
		go func() { _, err := th.read(context.Background(), "kv", "x"); queued <- err }()
	}
	time.Sleep(20 * time.Millisecond) // they queue on the mount's lock
	cancel()
	close(gate)
	want := "hosted mount kv: pull access denied for example/kv"
	if err := <-first; err == nil || err.Error() != want {
		t.Fatalf("the request that started: %v", err)
	}
	for i := 0; i < 6; i++ {
		if err := <-queued; err == nil || (err.Error() != want && !errors.Is(err, context.Canceled)) {
			t.Errorf("a queued request: %v", err)
		}
	}
	th.engine.mu.Lock()
	tried := len(th.engine.startCtxs)
	th.engine.mu.Unlock()
	if tried != 2 {
		t.Fatalf("%d start attempts after one death; want 1", tried-1)
	}
}

// waiting is how many starts are held at the gate.
func waiting(e *fakeEngine) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.gated
}

// A hosted backend is set up as the type of its plugin (an auth mount's
// plugins as auth), as Vault sets up a mount of that type: the SDK's
// plugins read plugin_type from their config.
func TestHostedBackendIsSetUpAsItsPluginsType(t *testing.T) {
	for _, kind := range []string{"secret", "auth"} {
		th := newTestHost(t, nil)
		th.store.kind = kind
		th.mount(t, "m", "p")
		p := th.engine.last()
		p.mu.Lock()
		var config map[string]string
		for _, b := range p.backends {
			config = b.conf.Config
		}
		p.mu.Unlock()
		if config["plugin_type"] != kind || config["plugin_name"] != "p" {
			t.Errorf("a %s plugin's backend was set up with %v", kind, config)
		}
	}
}
