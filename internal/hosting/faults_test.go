package hosting

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The rules that hold through faults of this plugin's own process, slow
// plugins and seals, on fake plugins.

// When this plugin's process dies, Vault starts a new one without reading
// the special paths again: what it enforces is what the last process
// published, which the new one loads from storage. A mount whose paths
// Vault enforces serves at once; one whose paths changed since is still
// pending; and without the stored record (a load that failed) every mount
// that declares paths is pending, never less protected.
func TestPublishedPathsOutliveTheProcess(t *testing.T) {
	e := &fakeEngine{paths: &logical.Paths{Unauthenticated: []string{"login"}}}
	th := newTestHost(t, e)
	m := th.mount(t, "jwt", "probe")
	th.SpecialPaths(&logical.Paths{}, []*Mount{m}) // Vault mounts us and reads them
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if stored, _ := th.store.Published(context.Background()); stored["jwt"] == m.UUID+publishedSep+m.Paths.key() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the published paths were never stored")
		}
	}

	// The process dies; Vault starts a new one on the same storage and
	// never asks it for its paths.
	restarted := func(load bool) *testHost {
		h := New(Config{Store: th.store, Start: e.start, System: func() logical.SystemView { return logical.TestSystemView() }})
		t.Cleanup(func() { h.Close(context.Background()) })
		if load {
			if err := h.LoadPublished(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		return &testHost{Host: h, engine: e, store: th.store}
	}
	if _, err := restarted(true).read(context.Background(), "jwt", "login"); err != nil {
		t.Fatalf("after a restart of the process, a login: %v", err)
	}
	if _, err := restarted(false).read(context.Background(), "jwt", "login"); err == nil || !strings.Contains(err.Error(), "differ from those Vault enforces") {
		t.Fatalf("with nothing loaded, a mount that declares paths answered %v; want pending", err)
	}
	// A mount deleted and created again under the name, declaring the same
	// paths, before Vault read them: the stored record is the old mount's,
	// not what Vault enforces for the new one, which is pending.
	th.store.mu.Lock()
	recreated := *th.store.mounts["jwt"]
	recreated.UUID = "another-uuid"
	th.store.mounts["jwt"] = &recreated
	th.store.mu.Unlock()
	if _, err := restarted(true).read(context.Background(), "jwt", "login"); err == nil || !strings.Contains(err.Error(), "differ from those Vault enforces") {
		t.Fatalf("a mount created again under the name took the old one's stored paths: %v", err)
	}
	th.store.mu.Lock()
	th.store.mounts["jwt"] = m
	th.store.mu.Unlock()

	// Its plugin now declares more: pending until a reload, restart or not.
	e.mu.Lock()
	e.paths = &logical.Paths{Unauthenticated: []string{"login", "open/*"}}
	e.mu.Unlock()
	again := restarted(true)
	if err := again.Reload(context.Background(), []string{"jwt"}); len(err) != 0 {
		t.Fatal(err)
	}
	if _, err := again.read(context.Background(), "jwt", "login"); err == nil || !strings.Contains(err.Error(), "differ from those Vault enforces") {
		t.Fatalf("paths that changed since Vault read them: %v", err)
	}
}

// Paths Vault reads from this process win over the stored ones, loaded
// or not yet.
func TestPathsReadNowWinOverStored(t *testing.T) {
	e := &fakeEngine{paths: &logical.Paths{Root: []string{"admin"}}}
	th := newTestHost(t, e)
	m := th.mount(t, "p", "probe")
	if err := th.store.PutPublished(context.Background(), map[string]string{"p": "stale"}); err != nil {
		t.Fatal(err)
	}
	th.SpecialPaths(&logical.Paths{}, []*Mount{m})
	if err := th.LoadPublished(context.Background()); err != nil {
		t.Fatal(err)
	}
	if th.published.pending(m) {
		t.Fatal("a load after Vault read the paths replaced them with older ones")
	}
}

// A plugin that outlives the request's time answers a 504 naming the
// mount, however gRPC ends the call: its own deadline, or the plugin's end
// of the stream (DeadlineExceeded or Canceled from its RST_STREAM) a moment
// before ours. Nothing restarts and nothing is sent again.
func TestTheRequestLimitIsA504HoweverTheCallEnds(t *testing.T) {
	for _, ending := range []error{
		nil, // the call ends with its context
		status.Error(codes.DeadlineExceeded, "context deadline exceeded"),
		status.Error(codes.Canceled, "stream terminated by RST_STREAM with error code: CANCEL"),
	} {
		name := "context"
		if ending != nil {
			name = status.Code(ending).String()
		}
		t.Run(name, func(t *testing.T) {
			var calls sync.WaitGroup
			e := &fakeEngine{handler: func(ctx context.Context, _ *fakePlugin, _ *logical.Request) (*logical.Response, error) {
				deadline, _ := ctx.Deadline()
				if ending == nil {
					<-ctx.Done()
					return nil, status.FromContextError(ctx.Err()).Err()
				}
				time.Sleep(time.Until(deadline) - 50*time.Millisecond) // the plugin's end arrives first
				return nil, ending
			}}
			th := newTestHostWith(t, e, func(c *Config) { c.RequestTimeout = 300 * time.Millisecond })
			th.mount(t, "slow", "kv")
			for i := 0; i < 8; i++ {
				calls.Add(1)
				go func() {
					defer calls.Done()
					_, err := th.read(context.Background(), "slow", "x")
					if code, _ := codeOf(err); code != 504 || err.Error() != "hosted mount slow is not answering: its plugin did not answer within 300ms" {
						t.Errorf("a request past the limit: %v", err)
					}
				}()
			}
			calls.Wait()
			if n := th.engine.starts(); n != 1 {
				t.Fatalf("%d starts: a slow plugin was restarted", n)
			}
		})
	}
}

// The request's time covers a restart before it: a request that finds its
// plugin dead and waits for a start that never completes (a handshake that
// never comes) gets its 504 at its limit, and so do the requests queued
// behind that start; the start goes on, and its outcome serves the
// requests after it. A restart within the limit leaves the request only
// what is left of its time.
func TestTheRequestLimitCoversTheRestart(t *testing.T) {
	deadlines := make(chan time.Time, 8)
	e := &fakeEngine{handler: func(ctx context.Context, p *fakePlugin, _ *logical.Request) (*logical.Response, error) {
		d, _ := ctx.Deadline()
		deadlines <- d
		return &logical.Response{Data: map[string]interface{}{"container": p.id}}, nil
	}}
	th := newTestHostWith(t, e, func(c *Config) { c.RequestTimeout = 300 * time.Millisecond })
	th.mount(t, "kv", "kv")
	th.engine.last().kill()
	gate := make(chan struct{})
	e.mu.Lock()
	e.startGate = gate
	e.mu.Unlock()
	answers := make(chan error, 3)
	for i := 0; i < 3; i++ {
		go func() { _, err := th.read(context.Background(), "kv", "x"); answers <- err }()
	}
	for i := 0; i < 3; i++ {
		select {
		case err := <-answers:
			if code, _ := codeOf(err); code != 504 {
				t.Fatalf("a request waiting on a start that does not complete: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a request waited on a start past its limit")
		}
	}
	close(gate) // the start completes: the next request is served by it
	if c := containerOf(t)(th.read(context.Background(), "kv", "x")); c != "c2" || th.engine.starts() != 2 {
		t.Fatalf("after the start completed: served by %s, %d starts", c, th.engine.starts())
	}
	<-deadlines

	// A restart within the limit: the plugin gets what is left of it.
	th.engine.last().kill()
	gate = make(chan struct{})
	e.mu.Lock()
	e.startGate = gate
	e.mu.Unlock()
	go func() { time.Sleep(200 * time.Millisecond); close(gate) }()
	began := time.Now()
	if _, err := th.read(context.Background(), "kv", "x"); err != nil {
		t.Fatalf("a restart within the limit: %v", err)
	}
	if d := <-deadlines; d.After(began.Add(400 * time.Millisecond)) { // 500 ms at least without the rule
		t.Fatalf("the plugin got until %s after the request began: the limit started again after the restart", d.Sub(began))
	}
}

// A seal (the host closing) abandons the starts in progress: Close does not
// wait for a plugin slow to start, the write that started it is refused
// saying why, nothing runs afterwards, and no failed start is counted
// against the plugin. Requests queued behind the start get the same answer.
func TestCloseAbandonsSlowStarts(t *testing.T) {
	e := &fakeEngine{startGate: make(chan struct{})} // never opened: the handshake never comes
	th := newTestHost(t, e)
	put := make(chan error, 1)
	go func() { put <- th.Put(context.Background(), &Mount{Name: "slow", Plugin: "kv"}, nil) }()
	for waiting(e) < 1 {
		time.Sleep(time.Millisecond)
	}
	closed := make(chan struct{})
	go func() { th.Close(context.Background()); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for a start that never completes")
	}
	err := <-put
	if code, _ := codeOf(err); code != 503 || !strings.Contains(err.Error(), "this mount is closing") {
		t.Fatalf("the write whose start was abandoned: %v", err)
	}
	if running := e.running(); len(running) != 0 || e.starts() != 0 {
		t.Fatalf("after the close: %d started, running %v", e.starts(), running)
	}
}

// A mount whose container is gone shows no container ID: nothing by that
// ID exists any more.
func TestAGoneContainerHasNoID(t *testing.T) {
	th := newTestHost(t, nil)
	th.mount(t, "kv", "kv")
	th.engine.last().kill()
	if st := th.status(t, "kv"); st.State != StateStopped || st.ContainerID != "" {
		t.Fatalf("status of a mount whose container is gone: %+v", st)
	}
}

// An error of the hosted plugin's whose text is net/rpc's "connection is
// shut down" would read to Vault as this plugin's process gone: Vault would
// reload this mount and send the request again. It reaches Vault named as
// the mount's, in every forwarding path.
func TestAHostedShutdownErrorIsNotOurs(t *testing.T) {
	e := &fakeEngine{handler: func(context.Context, *fakePlugin, *logical.Request) (*logical.Response, error) {
		return nil, errors.New("connection is shut down")
	}}
	th := newTestHost(t, e)
	th.mount(t, "kv", "kv")
	_, err := th.read(context.Background(), "kv", "x")
	if err == nil || err.Error() != "hosted mount kv: connection is shut down" {
		t.Fatalf("the plugin's error reached Vault as %v", err)
	}
}

// Vault asks a write's existence check before the write: a check that uses
// up the request's limit on a hung plugin makes the write that follows (same
// request ID) answer the 504 at once, not wait another limit, past Vault's
// own 90 s. Another request is not affected.
func TestACheckThatTimedOutAnswersTheWrite(t *testing.T) {
	th := newTestHostWith(t, &fakeEngine{}, func(c *Config) { c.RequestTimeout = 200 * time.Millisecond })
	th.mount(t, "hung", "kv")
	p := th.engine.last()
	hung := &hungChecks{}
	p.mu.Lock()
	for _, b := range p.backends {
		b.check = hung.check
	}
	p.mu.Unlock()
	req := &logical.Request{ID: "req-1", Operation: logical.CreateOperation, Path: "mounts/hung/x", MountPoint: "runtimes/"}
	if found, _, err := th.ExistenceCheck(context.Background(), "hung", "x", req); found || err != nil {
		t.Fatalf("a check that timed out: %v %v", found, err)
	}
	// The fake answers writes at once: only the rule makes this a 504.
	_, err := th.Forward(context.Background(), "hung", "x", req)
	if code, _ := codeOf(err); code != 504 || hung.calls.Load() != 1 {
		t.Fatalf("the write after its check timed out: %v (%d checks)", err, hung.calls.Load())
	}
	other := &logical.Request{ID: "req-2", Operation: logical.ReadOperation, Path: "mounts/hung/x", MountPoint: "runtimes/"}
	if _, err := th.Forward(context.Background(), "hung", "x", other); err != nil {
		t.Fatalf("another request: %v", err)
	}
}

// hungChecks hangs every existence check until its context ends.
type hungChecks struct{ calls atomic.Int32 }

func (h *hungChecks) check(ctx context.Context) (bool, bool, error) {
	h.calls.Add(1)
	<-ctx.Done()
	return false, false, status.FromContextError(ctx.Err()).Err()
}

// A write of a mount waits for its plugin's start up to StartWait: past it
// the start goes on, the write answers ErrStillStarting (the catalog then
// stores the mount), and a read of its state says starting without waiting.
// Vault waits for every request in flight before it seals, so a write held
// by a slow handshake would hold the seal: a seal now waits StartWait at
// most, and then abandons the start.
func TestAWriteWaitsForAStartUpToStartWait(t *testing.T) {
	e := &fakeEngine{startGate: make(chan struct{}), paths: &logical.Paths{Root: []string{"admin"}}}
	th := newTestHostWith(t, e, func(c *Config) { c.StartWait = 50 * time.Millisecond })
	m := &Mount{Name: "slow", Plugin: "kv"}
	if err := th.Put(context.Background(), m, nil); !errors.Is(err, ErrStillStarting) {
		t.Fatalf("a write whose start outlasts StartWait: %v", err)
	}
	th.store.mu.Lock()
	th.store.mounts["slow"] = m // the catalog stores it
	th.store.mu.Unlock()
	if st := th.status(t, "slow"); st.State != StateStarting {
		t.Fatalf("while its plugin starts: %+v", st)
	}
	if h := th.Health(context.Background(), m); h.Usage != nil {
		t.Fatalf("health while starting: %+v", h)
	}
	close(e.startGate) // the plugin starts after all
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if st := th.status(t, "slow"); st.State == StatePendingReload {
			break // running, with paths Vault has not read
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the start: %+v", th.status(t, "slow"))
		}
	}
	// The paths its plugin declared are stored, as a write's are.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		th.store.mu.Lock()
		root := th.store.mounts["slow"].Paths.Root
		th.store.mu.Unlock()
		if len(root) == 1 && root[0] == "admin" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the declared paths were not stored: %v", root)
		}
	}
}

// A change whose start outlasts StartWait is stored; if the start fails
// later, the mount is stopped with the reason, and its old settings are
// not run again (the new ones are what is stored).
func TestAChangeStillStartingIsNotRolledBack(t *testing.T) {
	e := &fakeEngine{}
	th := newTestHostWith(t, e, func(c *Config) { c.StartWait = 50 * time.Millisecond })
	old := th.mount(t, "kv", "kv")
	gate := make(chan struct{})
	e.mu.Lock()
	e.startGate = gate
	e.mu.Unlock()
	changed := *old
	changed.Options = map[string]string{"version": "2"}
	if err := th.Put(context.Background(), &changed, old); !errors.Is(err, ErrStillStarting) {
		t.Fatalf("a change whose start outlasts StartWait: %v", err)
	}
	e.mu.Lock()
	e.startErr = errors.New("missing image")
	e.mu.Unlock()
	close(gate)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if st := th.status(t, "kv"); st.State == StateStopped && strings.Contains(st.Reason, "missing image") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the late failure: %+v", th.status(t, "kv"))
		}
	}
	e.mu.Lock()
	tried := len(e.startCtxs)
	e.mu.Unlock()
	if tried != 2 {
		t.Fatalf("%d starts tried (the mount's, the change's): the old settings were run again", tried)
	}
	hd, _ := th.Host.lookup(context.Background(), "kv")
	hd.mu.RLock()
	options := hd.mount.Options
	hd.mu.RUnlock()
	if options["version"] != "2" {
		t.Fatalf("the mount runs with %v", options)
	}
}

// A write of a mount whose plugin a request is restarting waits for that
// start no longer than for its own: a 503 asking to retry, nothing stored.
func TestAWriteWaitsForAnotherStartUpToStartWait(t *testing.T) {
	e := &fakeEngine{}
	th := newTestHostWith(t, e, func(c *Config) { c.StartWait = 50 * time.Millisecond; c.RequestTimeout = time.Hour })
	old := th.mount(t, "kv", "kv")
	th.engine.last().kill()
	gate := make(chan struct{})
	e.mu.Lock()
	e.startGate = gate
	e.mu.Unlock()
	defer close(gate)
	go th.read(context.Background(), "kv", "x") // restarts it, and waits at the gate
	for waiting(e) < 1 {
		time.Sleep(time.Millisecond)
	}
	changed := *old
	changed.Options = map[string]string{"version": "2"}
	err := th.Put(context.Background(), &changed, old)
	if code, _ := codeOf(err); code != 503 || !strings.Contains(err.Error(), "busy starting its plugin") {
		t.Fatalf("a write while a request restarts the plugin: %v", err)
	}
}
