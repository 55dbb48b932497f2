package hosting

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
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

// The crash-loop rule: a plugin that dies right after starting
// crashLoopCrashes times in a row fails the mount, with its last exit's
// cause and the real command to fix it; requests then start nothing until
// the wait is over, when one start is tried; a reload clears it.
func TestCrashLoopRule(t *testing.T) {
	th := newTestHost(t, nil)
	th.mount(t, "kv", "kv")
	for i := 0; i < crashLoopCrashes-1; i++ {
		th.engine.last().kill()
		if _, err := th.read(context.Background(), "kv", "x"); err != nil {
			t.Fatalf("restart %d: %v", i+1, err)
		}
	}
	th.engine.last().kill()
	_, err := th.read(context.Background(), "kv", "x")
	prefix := "hosted mount kv failed: its plugin crashed 3 times in a row (it did not start, or died within 10s of starting); " +
		"last: plugin container exited with code 137 (killed); last output: its container is gone; it is tried again from "
	suffix := "; after fixing the cause, restart it at once with: vault write runtimes/plugins/reload mounts=kv"
	if code, _ := codeOf(err); code != 502 || !strings.HasPrefix(err.Error(), prefix) || !strings.HasSuffix(err.Error(), suffix) {
		t.Fatalf("the crash loop answered %d:\n%v\nwant\n%s...%s", code, err, prefix, suffix)
	}
	starts := th.engine.starts()
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := th.read(context.Background(), "kv", "x"); err == nil || !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("a failed mount answered %v", err)
			}
		}()
	}
	wg.Wait()
	if st := th.status(t, "kv"); th.engine.starts() != starts || st.State != StateFailed || strings.Count(st.Reason, "crashed") != 1 {
		t.Fatalf("a failed mount started %d more times; %+v", th.engine.starts()-starts, st)
	}

	// Its wait over, one start is tried: it serves, and dying at once
	// again fails it for twice as long.
	hd, _ := th.handle(th.store.mounts["kv"])
	setRetry := func(at time.Time) { hd.mu.Lock(); hd.crash.retryAt = at; hd.mu.Unlock() }
	setRetry(time.Now())
	if _, err := th.read(context.Background(), "kv", "x"); err != nil || th.status(t, "kv").State != StateRunning {
		t.Fatalf("after its wait: %v %+v", err, th.status(t, "kv"))
	}
	th.engine.last().kill()
	if _, err := th.read(context.Background(), "kv", "x"); err == nil || hd.crash.backoff != 2*failedRetryFirst {
		t.Fatalf("a crash right after the retry: %v, next wait %s", err, hd.crash.backoff)
	}
	if failures := th.Reload(context.Background(), []string{"kv"}); len(failures) != 0 {
		t.Fatalf("reload: %v", failures)
	}
	if _, err := th.read(context.Background(), "kv", "x"); err != nil || th.status(t, "kv").State != StateRunning {
		t.Fatalf("after the reload: %v %+v", err, th.status(t, "kv"))
	}
}

// A plugin that dies after running well (stopped or killed out of band)
// is restarted as often as that happens: it did not crash.
func TestDeathsAfterRunningWellNeverFail(t *testing.T) {
	th := newTestHost(t, nil)
	th.mount(t, "kv", "kv")
	hd, _ := th.handle(th.store.mounts["kv"])
	for i := 0; i < 3*crashLoopCrashes; i++ {
		hd.mu.Lock()
		hd.started = time.Now().Add(-settleTime) // it ran well
		hd.mu.Unlock()
		th.engine.last().kill()
		if _, err := th.read(context.Background(), "kv", "x"); err != nil {
			t.Fatalf("after out-of-band death %d: %v", i+1, err)
		}
	}
	if st := th.status(t, "kv"); st.State != StateRunning || st.Restarts != 3*crashLoopCrashes {
		t.Fatalf("after %d deaths: %+v", 3*crashLoopCrashes, st)
	}
}

// Mounts of a multiplexed plugin share its container, which stops with
// its last mount; a plugin that is not multiplexed gets one per mount.
func TestSharingAndReleasingContainers(t *testing.T) {
	for _, multiplexed := range []bool{true, false} {
		t.Run(fmt.Sprintf("multiplexed=%v", multiplexed), func(t *testing.T) {
			th := newTestHost(t, &fakeEngine{multiplexed: multiplexed})
			a, b := th.mount(t, "a", "kv"), th.mount(t, "b", "kv")
			th.mount(t, "c", "other")
			ca, cb := th.status(t, "a"), th.status(t, "b")
			if multiplexed != (ca.ContainerID == cb.ContainerID) || th.engine.starts() != map[bool]int{true: 2, false: 3}[multiplexed] {
				t.Fatalf("a in %s, b in %s, %d starts", ca.ContainerID, cb.ContainerID, th.engine.starts())
			}
			if multiplexed && (!reflect.DeepEqual(ca.Shared, []string{"b"}) || !reflect.DeepEqual(cb.Shared, []string{"a"})) {
				t.Fatalf("shared: a %v, b %v", ca.Shared, cb.Shared)
			}
			if err := th.Remove(context.Background(), a, false, "runtimes/"); err != nil {
				t.Fatal(err)
			}
			delete(th.store.mounts, "a")
			running := th.engine.running()
			if len(running) != 2 || running[0] != cb.ContainerID {
				t.Fatalf("after removing a: running %v, b in %s", running, cb.ContainerID)
			}
			if err := th.Remove(context.Background(), b, false, "runtimes/"); err != nil {
				t.Fatal(err)
			}
			if running := th.engine.running(); len(running) != 1 {
				t.Fatalf("after removing both: running %v", running)
			}
		})
	}
}

// A reload starts a new container for the mount with its data kept.
func TestReloadKeepsTheData(t *testing.T) {
	th := newTestHost(t, nil)
	m := th.mount(t, "kv", "kv")
	view := th.store.Data(m.UUID)
	view.Put(context.Background(), &logical.StorageEntry{Key: "secret", Value: []byte("1")})
	if failures := th.Reload(context.Background(), []string{"kv", "nope"}); len(failures) != 1 || failures["nope"] != "no hosted mount nope" {
		t.Fatalf("reload: %v", failures)
	}
	if st := th.status(t, "kv"); st.ContainerID != "c2" || !reflect.DeepEqual(th.engine.running(), []string{"c2"}) {
		t.Fatalf("after the reload: %+v, running %v", st, th.engine.running())
	}
	if se, _ := view.Get(context.Background(), "secret"); se == nil {
		t.Fatal("a reload lost the data")
	}
}

// A mount that cannot start is refused, and leaves neither a handle nor
// what it wrote.
func TestFailedStartLeavesNothing(t *testing.T) {
	th := newTestHost(t, &fakeEngine{startErr: errors.New("missing image")})
	m := &Mount{Name: "kv", Plugin: "kv"}
	if err := th.Put(context.Background(), m, nil); err == nil || err.Error() != "missing image" {
		t.Fatalf("put: %v", err)
	}
	if len(th.handles) != 0 || len(th.store.cleared) != 1 || th.store.cleared[0] != m.UUID {
		t.Fatalf("handles %v, cleared %v", th.handles, th.store.cleared)
	}
}

// A changed mount that cannot start goes back to its old settings.
func TestFailedChangeRunsTheOldSettings(t *testing.T) {
	th := newTestHost(t, nil)
	old := th.mount(t, "kv", "kv")
	th.engine.handler = nil
	changed := *old
	changed.Options = map[string]string{"version": "2"}
	th.engine.startErr = errors.New("bad option")
	if err := th.Put(context.Background(), &changed, old); err == nil {
		t.Fatal("a change that did not start was accepted")
	}
	th.engine.startErr = nil
	if _, err := th.read(context.Background(), "kv", "x"); err != nil {
		t.Fatalf("the old settings do not serve: %v", err)
	}
	hd, _ := th.handle(old)
	hd.mu.RLock()
	defer hd.mu.RUnlock()
	if hd.mount.Options != nil {
		t.Fatalf("runs %+v", hd.mount)
	}
}

// Delete waits for the requests in flight, then no container of the mount
// runs, its data is gone, and later requests (even one that found the
// mount still stored) get a 404 and start nothing.
func TestDeleteDuringRequests(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 8)
	e := &fakeEngine{handler: func(ctx context.Context, p *fakePlugin, _ *logical.Request) (*logical.Response, error) {
		entered <- struct{}{}
		<-release
		return &logical.Response{Data: map[string]interface{}{"container": p.id}}, nil
	}}
	th := newTestHost(t, e)
	m := th.mount(t, "kv", "kv")
	th.store.Data(m.UUID).Put(context.Background(), &logical.StorageEntry{Key: "k", Value: []byte("v")})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := th.read(context.Background(), "kv", "x"); err != nil {
				t.Errorf("a request in flight during the delete: %v", err)
			}
		}()
		<-entered
	}
	removed := make(chan error, 1)
	go func() { removed <- th.Remove(context.Background(), m, false, "runtimes/") }()
	select {
	case err := <-removed:
		t.Fatalf("the delete did not wait for the requests in flight: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	wg.Wait()
	if err := <-removed; err != nil {
		t.Fatal(err)
	}
	// The catalog deletes the entry after the host; a request between the
	// two still finds it stored.
	_, err := th.read(context.Background(), "kv", "x")
	if code, _ := codeOf(err); code != 404 {
		t.Fatalf("a request after the delete: %v", err)
	}
	if th.engine.starts() != 1 || len(th.engine.running()) != 0 {
		t.Fatalf("after the delete: %d starts, running %v", th.engine.starts(), th.engine.running())
	}
	if keys, _ := logical.CollectKeys(context.Background(), &th.store.storage); len(keys) != 0 {
		t.Fatalf("left in storage: %v", keys)
	}
}

// A lease issued by a request that was in flight when the delete counted
// none refuses the delete: leases are counted again once requests in
// flight are done. The mount keeps its data and serves on, unstopped.
func TestLeaseIssuedDuringTheDelete(t *testing.T) {
	release, entered := make(chan struct{}), make(chan struct{}, 1)
	e := &fakeEngine{handler: func(_ context.Context, p *fakePlugin, req *logical.Request) (*logical.Response, error) {
		if req.Path == "slow" {
			entered <- struct{}{}
			<-release
			return &logical.Response{Secret: &logical.Secret{LeaseOptions: logical.LeaseOptions{TTL: time.Hour},
				InternalData: map[string]interface{}{"secret_type": "creds"}}, Data: map[string]interface{}{}}, nil
		}
		return &logical.Response{Data: map[string]interface{}{"container": p.id}}, nil
	}}
	th := newTestHost(t, e)
	m := th.mount(t, "db", "db")
	th.store.Data(m.UUID).Put(context.Background(), &logical.StorageEntry{Key: "k", Value: []byte("v")})
	go th.read(context.Background(), "db", "slow")
	<-entered
	removed := make(chan error, 1)
	go func() { removed <- th.Remove(context.Background(), m, false, "runtimes/") }()
	time.Sleep(50 * time.Millisecond) // the delete has counted no lease, and waits for the request
	close(release)
	if err := <-removed; err == nil || !strings.Contains(err.Error(), "hosted mount db has 1 leases outstanding") {
		t.Fatalf("a delete during a request that issued a lease: %v", err)
	}
	if c := containerOf(t)(th.read(context.Background(), "db", "x")); c != "c1" {
		t.Fatalf("after the refused delete, served by %s: it did not serve on", c)
	}
	if entry, _ := th.store.Data(m.UUID).Get(context.Background(), "k"); entry == nil {
		t.Fatal("a refused delete cleared the data")
	}
}

// A deleted name created again is a new mount: new UUID, its own data.
func TestRecreatedNameIsANewMount(t *testing.T) {
	th := newTestHost(t, nil)
	old := th.mount(t, "kv", "kv")
	if err := th.Remove(context.Background(), old, false, "runtimes/"); err != nil {
		t.Fatal(err)
	}
	delete(th.store.mounts, "kv")
	fresh := th.mount(t, "kv", "kv")
	if fresh.UUID == old.UUID {
		t.Fatal("the new mount has the old UUID")
	}
	if c := containerOf(t)(th.read(context.Background(), "kv", "x")); c != "c2" {
		t.Fatalf("served by %s", c)
	}
}

// Leases are counted as they are issued and revoked, written behind, and
// a mount with leases out is deleted only with force.
func TestLeaseCounting(t *testing.T) {
	e := &fakeEngine{handler: func(_ context.Context, p *fakePlugin, req *logical.Request) (*logical.Response, error) {
		if req.Operation == logical.RevokeOperation {
			return nil, nil
		}
		secret := &logical.Secret{LeaseOptions: logical.LeaseOptions{TTL: time.Hour}}
		if req.MountPoint == "runtimes/mounts/db/" { // kv's non-leased answer has no secret_type
			secret.InternalData = map[string]interface{}{"secret_type": "creds"}
		}
		return &logical.Response{Secret: secret, Data: map[string]interface{}{}}, nil
	}}
	th := newTestHost(t, e)
	m := th.mount(t, "db", "db")
	kv := th.mount(t, "kv", "kvh") // kv under another name: its Secret without a secret_type is no lease
	for i := 0; i < 3; i++ {
		th.read(context.Background(), "db", "creds")
		if resp, _ := th.read(context.Background(), "kv", "x"); resp.Secret != nil {
			t.Fatal("a Secret without a secret_type kept its lease")
		}
	}
	th.Forward(context.Background(), "db", "", &logical.Request{Operation: logical.RevokeOperation, MountPoint: "runtimes/"})
	err := th.Remove(context.Background(), m, false, "runtimes/")
	want := "hosted mount db has 2 leases outstanding: revoke them first with `vault lease revoke -prefix runtimes/mounts/db/`, or delete with force=true"
	if err == nil || err.Error() != want {
		t.Fatalf("delete with leases out:\n%v\nwant\n%s", err, want)
	}
	if err := th.Remove(context.Background(), kv, false, "runtimes/"); err != nil {
		t.Fatalf("kv issued leases: %v", err)
	}
	if err := th.Remove(context.Background(), m, true, "runtimes/"); err != nil {
		t.Fatal(err)
	}
	if n, _ := th.store.Leases(context.Background(), m.UUID); n != 0 {
		t.Fatalf("the count outlived the mount: %d", n)
	}
}

// A mount that declares special paths Vault has not read is refused until
// a reload has Vault read them.
func TestPendingReload(t *testing.T) {
	th := newTestHost(t, &fakeEngine{paths: &logical.Paths{Unauthenticated: []string{"pub/*"}}})
	m := th.mount(t, "s", "probe")
	if !reflect.DeepEqual(m.Paths.Unauthenticated, []string{"pub/*"}) {
		t.Fatalf("the stored mount's paths: %+v", m.Paths)
	}
	_, err := th.read(context.Background(), "s", "pub/x")
	if code, _ := codeOf(err); code != 503 || !strings.Contains(err.Error(), "vault write sys/plugins/reload/backend mounts=runtimes/") {
		t.Fatalf("a pending mount answered %v", err)
	}
	th.SpecialPaths(&logical.Paths{}, []*Mount{m}) // Vault reads them
	if err := th.Reload(context.Background(), []string{"s"}); len(err) != 0 {
		t.Fatal(err)
	}
	if _, err := th.read(context.Background(), "s", "pub/x"); err != nil {
		t.Fatalf("after Vault read the paths: %v", err)
	}
}

// Close stops every container, and nothing starts after it.
func TestCloseStopsEverything(t *testing.T) {
	th := newTestHost(t, &fakeEngine{multiplexed: true})
	th.mount(t, "a", "kv")
	th.mount(t, "b", "other")
	th.Close(context.Background())
	if running := th.engine.running(); len(running) != 0 {
		t.Fatalf("running after close: %v", running)
	}
	if _, err := th.read(context.Background(), "a", "x"); err == nil {
		t.Fatal("a closed host served")
	}
	if th.engine.starts() != 2 {
		t.Fatalf("a closed host started %d containers", th.engine.starts()-2)
	}
}

// StartAll starts the stored mounts that do not run, at mount and unseal.
func TestStartAll(t *testing.T) {
	th := newTestHost(t, nil)
	th.store.mounts["a"] = &Mount{Name: "a", Plugin: "kv", UUID: "u-a"}
	th.store.mounts["b"] = &Mount{Name: "b", Plugin: "kv", UUID: "u-b"}
	th.StartAll(context.Background(), "cluster")
	if th.engine.starts() != 2 || th.status(t, "a").State != StateRunning || th.status(t, "b").State != StateRunning {
		t.Fatalf("%d starts: %+v %+v", th.engine.starts(), th.status(t, "a"), th.status(t, "b"))
	}
}

// Special paths that shrink leave the mount pending too: Vault still holds
// the entries its earlier plugin declared, unauthenticated ones included.
func TestSpecialPathsThatShrinkArePending(t *testing.T) {
	e := &fakeEngine{paths: &logical.Paths{Unauthenticated: []string{"pub/*"}}}
	th := newTestHost(t, e)
	m := th.mount(t, "s", "probe")
	th.SpecialPaths(&logical.Paths{}, []*Mount{m}) // Vault reads pub/* as unauthenticated
	th.Reload(context.Background(), []string{"s"})
	if st := th.status(t, "s"); st.State != StateRunning {
		t.Fatalf("published: %+v", st)
	}
	// The mount is changed, or deleted and created again, with a plugin
	// that declares nothing.
	e.paths = nil
	if err := th.Remove(context.Background(), m, false, "runtimes/"); err != nil {
		t.Fatal(err)
	}
	delete(th.store.mounts, "s")
	fresh := th.mount(t, "s", "kv")
	if st := th.status(t, "s"); st.State != StatePendingReload {
		t.Fatalf("a mount with fewer paths than Vault holds: %+v", st)
	}
	if _, err := th.read(context.Background(), "s", "pub/x"); err == nil {
		t.Fatal("a mount whose paths Vault holds wrongly served")
	}
	th.SpecialPaths(&logical.Paths{}, []*Mount{fresh})
	th.Reload(context.Background(), []string{"s"})
	if _, err := th.read(context.Background(), "s", "pub/x"); err != nil {
		t.Fatalf("after Vault read the new paths: %v", err)
	}
}

// The existence check of a mount that cannot serve is no check, so that
// Vault sends the write and it gets the mount's status and reason; the
// plugin's own check answers otherwise.
func TestExistenceCheckOfAFailedMount(t *testing.T) {
	th := newTestHost(t, nil)
	th.mount(t, "kv", "kv")
	req := &logical.Request{Operation: logical.CreateOperation, Path: "mounts/kv/x", MountPoint: "runtimes/"}
	if found, exists, err := th.ExistenceCheck(context.Background(), "kv", "x", req); !found || !exists || err != nil {
		t.Fatalf("a running mount's check: %v %v %v", found, exists, err)
	}
	th.engine.startErr = errors.New("missing image")
	for i := 0; i < crashLoopCrashes; i++ {
		th.engine.last().kill()
		th.read(context.Background(), "kv", "x")
	}
	if st := th.status(t, "kv"); st.State != StateFailed {
		t.Fatalf("not failed: %+v", st)
	}
	if found, _, err := th.ExistenceCheck(context.Background(), "kv", "x", req); found || err != nil {
		t.Fatalf("a failed mount's check: %v %v", found, err)
	}
	if _, err := th.Forward(context.Background(), "kv", "x", req); err == nil || !strings.Contains(err.Error(), "hosted mount kv failed") {
		t.Fatalf("the write to a failed mount: %v", err)
	}
}

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

// An engine that does not answer is no fault of the plugin: its failed
// starts are not counted, concurrent requests do not each try one, and the
// mount serves again once the engine answers.
func TestUnreachableEngineBacksOff(t *testing.T) {
	pinger := &pingEngines{}
	th := newTestHostWith(t, nil, func(c *Config) {
		c.EngineRetry = 10 * time.Second
		c.Engines = pinger
	})
	th.mount(t, "kv", "kv")
	hd, _ := th.handle(th.store.mounts["kv"])
	th.engine.last().kill() // dockerd stopped: its containers die with it
	th.engine.mu.Lock()
	th.engine.startErr = fmt.Errorf("%w: the engine at unix:///var/run/docker.sock: connection refused", ErrEngineUnreachable)
	th.engine.mu.Unlock()
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := th.read(context.Background(), "kv", "x")
			if code, _ := codeOf(err); code != 503 || !strings.Contains(err.Error(), "hosted mount kv cannot start now: the engine does not answer") {
				t.Errorf("a request while the engine is down: %v", err)
			}
		}()
	}
	wg.Wait()
	th.engine.mu.Lock()
	tried := len(th.engine.startCtxs)
	th.engine.mu.Unlock()
	if tried != 2 {
		t.Fatalf("20 requests against a down engine tried %d starts; want 1", tried-1)
	}
	if n := pinger.asked.Load(); n > 2 {
		t.Fatalf("20 requests at once asked the down engine %d times: the asks are not spaced", n)
	}
	// More tries than the crash-loop rule allows, each once its wait is
	// over (made over here): the mount stays stopped, not failed, and the
	// wait doubles up to its bound.
	for i := 0; i <= 2*crashLoopCrashes; i++ {
		hd.mu.Lock()
		hd.retryAt = time.Now()
		hd.mu.Unlock()
		th.read(context.Background(), "kv", "x")
		if st := th.status(t, "kv"); st.State != StateStopped {
			t.Fatalf("while the engine is down: %+v", st)
		}
	}
	if hd.retryAfter != engineRetryMax {
		t.Fatalf("the wait after %d tries: %s", 2*crashLoopCrashes+2, hd.retryAfter)
	}
	// Back, it is asked during the wait: the next request starts the
	// mount, not the first after the wait (here 5 minutes away).
	hd.mu.Lock()
	hd.retryAt = time.Now().Add(5 * time.Minute)
	hd.mu.Unlock()
	th.engine.mu.Lock()
	th.engine.startErr = nil
	th.engine.mu.Unlock()
	pinger.up.Store(true)
	time.Sleep(engineAskEvery)
	eventually := time.Now().Add(10 * time.Second)
	for {
		_, err := th.read(context.Background(), "kv", "x")
		if err == nil {
			break
		}
		if time.Now().After(eventually) {
			t.Fatalf("the engine answers again, the mount does not: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := th.status(t, "kv"); st.State != StateRunning {
		t.Fatalf("after the engine came back: %+v", st)
	}
}

// A request during which the plugin went past its memory limit is answered
// with the exit and the limit, and not sent again (it would kill the next
// container too); the next request restarts the plugin.
func TestMemoryKillIsNotRetried(t *testing.T) {
	e := &fakeEngine{}
	e.handler = func(_ context.Context, p *fakePlugin, req *logical.Request) (*logical.Response, error) {
		if req.Path == "huge" {
			p.oom.Store(true)
			p.kill()
			return nil, errGone
		}
		return &logical.Response{Data: map[string]interface{}{"container": p.id}}, nil
	}
	th := newTestHost(t, e)
	th.mount(t, "kv", "kv")
	_, err := th.read(context.Background(), "kv", "huge")
	if code, _ := codeOf(err); code != 502 || !strings.Contains(err.Error(), "memory_bytes 67108864") ||
		!strings.Contains(err.Error(), "this request is not sent again") {
		t.Fatalf("an OOM during a request: %v", err)
	}
	if n := th.engine.starts(); n != 1 {
		t.Fatalf("the request that went past the limit was sent again: %d starts", n)
	}
	if c := containerOf(t)(th.read(context.Background(), "kv", "x")); c != "c2" {
		t.Fatalf("the next request was served by %s", c)
	}
}

// A plugin that exits with an error of its own on one path (a panic, exit
// code 2) is not sent that request again, and however often that path is
// asked, right after a start too, the mount is not failed: its other
// paths serve, each time on a new container.
func TestPanicOnOnePathDoesNotFailTheMount(t *testing.T) {
	e := &fakeEngine{}
	e.handler = func(_ context.Context, p *fakePlugin, req *logical.Request) (*logical.Response, error) {
		switch req.Path {
		case "panic":
			p.exitCode.Store(2)
			p.kill()
			return nil, errGone
		case "killed":
			if p.id == "c1" {
				p.kill() // docker kill: 137
				return nil, errGone
			}
		}
		return &logical.Response{Data: map[string]interface{}{"container": p.id}}, nil
	}
	th := newTestHostWith(t, e, func(c *Config) { c.NotCrashSpacing = 100 * time.Millisecond })
	th.mount(t, "kv", "kv")
	// Killed from outside during the request: it may have been applied,
	// so it is not sent again either.
	if _, err := th.read(context.Background(), "kv", "killed"); !strings.Contains(err.Error(), "this request is not sent again, as it may have reached the plugin") {
		t.Fatalf("a request whose plugin was killed from outside: %v", err)
	}
	for i := 0; i < 2*crashLoopCrashes; i++ {
		_, err := th.read(context.Background(), "kv", "panic")
		if code, _ := codeOf(err); code != 502 || !strings.Contains(err.Error(), "exited with code 2") ||
			!strings.Contains(err.Error(), "this request is not sent again, as it may be what made the plugin panic") {
			t.Fatalf("request %d to a path that panics: %v", i, err)
		}
		if _, err := th.read(context.Background(), "kv", "x"); err != nil {
			t.Fatalf("after %d panics, another path: %v", i+1, err)
		}
	}
	if st := th.status(t, "kv"); st.State != StateRunning {
		t.Fatalf("after panics on one path: %+v", st)
	}
	// One start for each panic, one for the kill and the first: no retries.
	if n := th.engine.starts(); n != 2+2*crashLoopCrashes {
		t.Fatalf("%d starts", n)
	}
	// The restarts after the panics were spaced.
	began := time.Now()
	th.read(context.Background(), "kv", "panic")
	th.read(context.Background(), "kv", "x")
	if waited := time.Since(began); waited < 50*time.Millisecond {
		t.Fatalf("a restart right after another took %s: not spaced", waited)
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

// Clients creating, changing, reloading and deleting one mount name while
// others read it: afterwards the mount's state and the running containers
// agree, nothing orphaned, and a deleted mount's data is gone.
func TestChurnOnOneName(t *testing.T) {
	th := newTestHostWith(t, &fakeEngine{multiplexed: true}, func(c *Config) { c.StopTimeout = 50 * time.Millisecond })
	var storeMu sync.Mutex // the catalog's lock on the name
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if w >= 4 { // readers
					th.read(context.Background(), "m", "x")
					continue
				}
				storeMu.Lock()
				existing := th.store.mounts["m"]
				switch (w + i) % 4 {
				case 0, 1: // create or change
					m := &Mount{Name: "m", Plugin: "kv", Options: map[string]string{"i": fmt.Sprint(i)}}
					if err := th.Put(context.Background(), m, existing); err == nil {
						th.store.mu.Lock()
						th.store.mounts["m"] = m
						th.store.mu.Unlock()
					}
				case 2:
					if existing != nil {
						th.Reload(context.Background(), []string{"m"})
					}
				case 3:
					if existing != nil && th.Remove(context.Background(), existing, true, "runtimes/") == nil {
						th.store.mu.Lock()
						delete(th.store.mounts, "m")
						th.store.mu.Unlock()
					}
				}
				storeMu.Unlock()
			}
		}(w)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	running := th.engine.running()
	m := th.store.mounts["m"]
	if m == nil {
		if len(running) != 0 {
			t.Fatalf("no mount, but running %v", running)
		}
		return
	}
	// A request finds it running in the one container left.
	if _, err := th.read(context.Background(), "m", "x"); err != nil {
		t.Fatalf("the mount left: %v", err)
	}
	st := th.status(t, "m")
	if running = th.engine.running(); len(running) != 1 || st.ContainerID != running[0] {
		t.Fatalf("mount %+v, running %v", st, running)
	}
	keys, _ := logical.CollectKeys(context.Background(), &th.store.storage)
	for _, k := range keys {
		if !strings.HasPrefix(k, "hosted/"+m.UUID+"/") && k != "leases/"+m.UUID {
			t.Errorf("a deleted mount's key is left: %s", k)
		}
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

// A delete that stopped the mount but could not clear its data is
// repeated until it is done.
func TestDeleteIsRepeatedUntilDone(t *testing.T) {
	th := newTestHost(t, nil)
	m := th.mount(t, "kv", "kv")
	th.store.Data(m.UUID).Put(context.Background(), &logical.StorageEntry{Key: "k", Value: []byte("v")})
	th.store.clearErr = errors.New("context deadline exceeded")
	if err := th.Remove(context.Background(), m, false, "runtimes/"); err == nil ||
		err.Error() != "clearing the data of hosted mount kv: context deadline exceeded" {
		t.Fatalf("a delete whose clearing failed: %v", err)
	}
	if err := th.Remove(context.Background(), m, false, "runtimes/"); err != nil {
		t.Fatalf("the delete again: %v", err)
	}
	if keys, _ := logical.CollectKeys(context.Background(), &th.store.storage); len(keys) != 0 || len(th.engine.running()) != 0 {
		t.Fatalf("left: keys %v, running %v", keys, th.engine.running())
	}
}

// A plugin that declares other special paths after a reload (a new image)
// has them stored: Vault reads them at the reload pending_reload asks for,
// and the mount serves after it, also on a host made anew (Vault's reload
// of this plugin).
func TestChangedPathsAreStored(t *testing.T) {
	e := &fakeEngine{}
	th := newTestHost(t, e)
	m := th.mount(t, "s", "probe")
	th.SpecialPaths(&logical.Paths{}, []*Mount{m})
	e.paths = &logical.Paths{Root: []string{"admin"}}
	th.Reload(context.Background(), []string{"s"})
	if st := th.status(t, "s"); st.State != StatePendingReload {
		t.Fatalf("after the plugin's paths grew: %+v", st)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) { // stored in the background
		stored, _ := th.store.Mount(context.Background(), "s")
		if reflect.DeepEqual(stored.Paths.Root, []string{"admin"}) && stored.UUID == m.UUID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stored: %+v", stored)
		}
	}
	// Vault's reload of this plugin: a new host reads the stored paths.
	fresh := New(Config{Store: th.store, Start: e.start, System: func() logical.SystemView { return logical.TestSystemView() }})
	defer fresh.Close(context.Background())
	mounts, _ := th.store.Mounts(context.Background())
	fresh.SpecialPaths(&logical.Paths{}, mounts)
	if _, err := fresh.Forward(context.Background(), "s", "x", &logical.Request{Operation: logical.ReadOperation, MountPoint: "runtimes/"}); err != nil {
		t.Fatalf("after Vault read the new paths: %v", err)
	}
}

// A mount changed or deleted on another node (an invalidated entry): the
// handle here follows its stored entry. Changed, it restarts with the new
// settings at its next request, on the container it shares with another
// mount, which serves on throughout; deleted, it is stopped and never
// starts again, and the other mount keeps the container.
func TestRefreshFollowsAnotherNode(t *testing.T) {
	th := newTestHost(t, &fakeEngine{multiplexed: true})
	m := th.mount(t, "kv", "kv")
	th.mount(t, "other", "kv")
	th.Refresh(context.Background(), "kv") // unchanged: nothing happens
	if c := containerOf(t)(th.read(context.Background(), "kv", "x")); c != "c1" || th.engine.starts() != 1 {
		t.Fatalf("an unchanged mount was restarted: %s", c)
	}
	changed := *m
	changed.Options = map[string]string{"version": "2"}
	th.store.mu.Lock()
	th.store.mounts["kv"] = &changed
	th.store.mu.Unlock()
	th.Refresh(context.Background(), "kv")
	if c := containerOf(t)(th.read(context.Background(), "kv", "x")); c != "c1" {
		t.Fatalf("a changed mount of a multiplexed plugin left its container: %s", c)
	}
	if b := th.engine.last().backends[m.UUID]; b == nil || b.conf.Config["version"] != "2" {
		t.Fatalf("restarted with backend %+v", b)
	}
	if st := th.status(t, "kv"); st.State != StateRunning || st.Restarts != 0 || !slices.Equal(st.Shared, []string{"other"}) {
		t.Fatalf("after the change: %+v", st)
	}
	th.store.mu.Lock()
	delete(th.store.mounts, "kv")
	th.store.mu.Unlock()
	th.Refresh(context.Background(), "kv")
	for deadline := time.Now().Add(5 * time.Second); len(th.status(t, "other").Shared) != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("a mount deleted elsewhere still shares the container: %+v", th.status(t, "other"))
		}
	}
	if _, err := th.handle(m); err == nil {
		t.Fatal("a mount deleted elsewhere can start again here")
	}
	if c := containerOf(t)(th.read(context.Background(), "other", "x")); c != "c1" || th.engine.starts() != 1 {
		t.Fatalf("the other mount: %s, %d starts", c, th.engine.starts())
	}
}

// A write of a running mount that changes nothing it runs with (its
// description) leaves it serving; one that changes its options restarts
// it, and says what changed.
func TestRewriteRestartsOnlyForItsSettings(t *testing.T) {
	th := newTestHost(t, nil)
	m := th.mount(t, "kv", "kv")
	same := *m
	if err := th.Put(context.Background(), &same, m); err != nil {
		t.Fatal(err)
	}
	if c := containerOf(t)(th.read(context.Background(), "kv", "x")); c != "c1" || th.engine.starts() != 1 {
		t.Fatalf("an unchanged write restarted the mount: %s", c)
	}
	changed := same
	changed.Plugin, changed.Options = "kv2", map[string]string{"version": "2", "a": "1"}
	was := same
	was.Options = map[string]string{"version": "1", "b": "2"}
	want := []string{"plugin kv -> kv2", "option a set to 1", "option b removed", "option version 1 -> 2"}
	if got := changed.Changes(&was); !slices.Equal(got, want) {
		t.Fatalf("changes %q, want %q", got, want)
	}
	if err := th.Put(context.Background(), &changed, &same); err != nil {
		t.Fatal(err)
	}
	if c := containerOf(t)(th.read(context.Background(), "kv", "x")); c != "c2" {
		t.Fatalf("a changed mount still served by %s", c)
	}
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
