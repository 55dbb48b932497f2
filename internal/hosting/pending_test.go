// Special paths on fake plugins: a mount is pending until Vault has read
// the paths its plugin declares.

package hosting

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

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
