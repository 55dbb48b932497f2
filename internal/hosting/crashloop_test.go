// The crash-loop rule on fake plugins: which deaths count, which fail the
// mount, and an engine that does not answer.

package hosting

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

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
