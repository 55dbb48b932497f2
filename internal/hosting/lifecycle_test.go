// A mount's lifecycle on fake plugins: sharing containers, changes,
// reloads, refreshes from another node, churn on one name, and close.

package hosting

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

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
