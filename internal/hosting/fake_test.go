package hosting

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// The host's lifecycle on fake plugins: no engine, no container. A
// fakeEngine starts fakePlugins, each of which serves fakeBackends whose
// requests the test decides.

// fakeEngine is the host's StartFunc and counts what it started.
type fakeEngine struct {
	mu          sync.Mutex
	started     []*fakePlugin
	multiplexed bool
	startErr    error // every start fails with it while set
	startCtxs   []context.Context
	// handler answers every request of every backend (nil: echo).
	handler func(ctx context.Context, p *fakePlugin, req *logical.Request) (*logical.Response, error)
	paths   *logical.Paths
	// startGate, when set, holds every start until it is closed.
	startGate chan struct{}
	gated     int // starts that reached the gate
	// invalidate answers every InvalidateKey (nil: at once).
	invalidate func(ctx context.Context)
}

func (e *fakeEngine) start(ctx context.Context, p runtime.Plugin, rt runtime.Runtime, logName string) (Plugin, error) {
	e.mu.Lock()
	gate := e.startGate
	if gate != nil {
		e.gated++
	}
	e.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done(): // as runtime.Start abandons a start
			return nil, fmt.Errorf("%w: %w", runtime.ErrStartAbandoned, ctx.Err())
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.startCtxs = append(e.startCtxs, ctx)
	if e.startErr != nil {
		return nil, e.startErr
	}
	fp := &fakePlugin{engine: e, id: fmt.Sprintf("c%d", len(e.started)+1), multiplexed: e.multiplexed, backends: map[string]*fakeBackend{},
		stopCh: make(chan struct{}), leaving: make(chan struct{})}
	e.started = append(e.started, fp)
	return fp, nil
}

func (e *fakeEngine) starts() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.started)
}

func (e *fakeEngine) last() *fakePlugin {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.started[len(e.started)-1]
}

// running are the IDs of the plugins started and not stopped.
func (e *fakeEngine) running() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var ids []string
	for _, p := range e.started {
		if !p.stopped.Load() {
			ids = append(ids, p.id)
		}
	}
	sort.Strings(ids)
	return ids
}

type fakePlugin struct {
	engine      *fakeEngine
	id          string
	multiplexed bool
	exited      atomic.Bool
	connGone    atomic.Bool   // its connection is closed, its exit not seen yet
	leaving     chan struct{} // closed by leave: its engine is taking it away, and it still serves
	leaveOnce   sync.Once
	oom         atomic.Bool  // its kill was its memory limit's
	noFigures   atomic.Bool  // its engine gives only pids, as rootless Podman may
	exitCode    atomic.Int32 // when exited: 137 (killed) unless set; 2 is a panic
	stopped     atomic.Bool
	mu          sync.Mutex
	backends    map[string]*fakeBackend
	stopCh      chan struct{} // closed when stopped: a hung call then fails
	hanging     atomic.Int32  // calls held by hang
	stopOnce    sync.Once
}

var errGone = status.Error(codes.Unavailable, "connection error: desc = \"transport: Error while dialing: dial unix: connect: connection refused\"")

// leave starts taking the container away, as kubectl delete pod does.
func (p *fakePlugin) leave() { p.leaveOnce.Do(func() { close(p.leaving) }) }

// kill ends the plugin as a crash or docker kill does.
func (p *fakePlugin) kill() { p.exited.Store(true) }

func (p *fakePlugin) Multiplexed(context.Context) (bool, error) { return p.multiplexed, nil }
func (p *fakePlugin) Backend(_ context.Context, id string, conf *logical.BackendConfig) (logical.Backend, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := &fakeBackend{plugin: p, conf: conf}
	p.backends[id] = b
	return b, nil
}
func (p *fakePlugin) Conn(string) grpc.ClientConnInterface { return nil }
func (p *fakePlugin) Exited() bool                         { return p.exited.Load() || p.stopped.Load() }
func (p *fakePlugin) Leaving() <-chan struct{}             { return p.leaving }
func (p *fakePlugin) Explain(cause error) error {
	if p.oom.Load() {
		return fmt.Errorf("plugin container exited with code 137 (SIGKILL from the kernel's OOM killer, as the engine reported: it exceeds its memory limit: memory_bytes 67108864); last output: %w", cause)
	}
	if p.Panicked() {
		return fmt.Errorf("plugin container exited with code 2; last output: panic: on this path: %w", cause)
	}
	if p.exited.Load() {
		return fmt.Errorf("plugin container exited with code 137 (killed); last output: %w", cause)
	}
	return cause
}
func (p *fakePlugin) ID() string { return p.id }
func (p *fakePlugin) Exit() (runtime.Exit, bool) {
	if !p.exited.Load() {
		return runtime.Exit{}, false
	}
	e := runtime.Exit{Time: time.Now(), Code: 137, Reason: runtime.ExitSignal, Signal: 9, Output: []string{"last line of " + p.id}}
	switch {
	case p.oom.Load():
		e.Reason = runtime.ExitMemoryLimit
	case p.Panicked():
		e.Code, e.Reason, e.Signal = 2, runtime.ExitPanicked, 0
	}
	return e, true
}
func (p *fakePlugin) Usage(context.Context) (runtime.Usage, error) {
	if p.noFigures.Load() {
		return runtime.Usage{Pids: 7, Missing: []string{runtime.FigureMemory, runtime.FigureMemoryLimit, runtime.FigureCPU}}, nil
	}
	return runtime.Usage{MemoryBytes: 20 << 20, MemoryLimitBytes: 64 << 20, CPUSeconds: 0.5, Pids: 7}, nil
}
func (p *fakePlugin) OOMKills() (int64, bool) {
	if p.noFigures.Load() {
		return 0, false
	}
	if p.exited.Load() && p.oom.Load() {
		return 1, true
	}
	return 0, true
}
func (p *fakePlugin) MemoryKilled() bool { return p.exited.Load() && p.oom.Load() }
func (p *fakePlugin) Panicked() bool     { return p.exited.Load() && p.exitCode.Load() == 2 }
func (p *fakePlugin) Stop(context.Context) {
	p.stopOnce.Do(func() { p.stopped.Store(true); close(p.stopCh) })
}

type fakeBackend struct {
	logical.Backend // nil: only what the host calls is implemented
	plugin          *fakePlugin
	conf            *logical.BackendConfig
	cleaned         atomic.Bool
	check           func(ctx context.Context) (bool, bool, error) // answers existence checks when set
}

func (b *fakeBackend) Initialize(context.Context, *logical.InitializationRequest) error { return nil }
func (b *fakeBackend) SpecialPaths() *logical.Paths                                     { return b.plugin.engine.paths }
func (b *fakeBackend) Cleanup(context.Context)                                          { b.cleaned.Store(true) }
func (b *fakeBackend) InvalidateKey(ctx context.Context, _ string) {
	if f := b.plugin.engine.invalidate; f != nil {
		f(ctx)
	}
}
func (b *fakeBackend) HandleExistenceCheck(ctx context.Context, _ *logical.Request) (bool, bool, error) {
	if b.plugin.Exited() {
		runtime.NotSent(ctx) // refused before it left, as by a closed connection
		return false, false, errGone
	}
	if b.check != nil {
		return b.check(ctx)
	}
	return true, true, nil
}

func (b *fakeBackend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	if b.plugin.Exited() || b.plugin.connGone.Load() {
		runtime.NotSent(ctx) // refused before it left, as by a closed connection
		return nil, errGone
	}
	if h := b.plugin.engine.handler; h != nil {
		return h(ctx, b.plugin, req)
	}
	return &logical.Response{Data: map[string]interface{}{"container": b.plugin.id, "path": req.Path, "mount_point": req.MountPoint}}, nil
}

// fakeStore is the catalog as the host sees it, in memory.
type fakeStore struct {
	mu       sync.Mutex
	mounts   map[string]*Mount
	storage  logical.InmemStorage
	cleared  []string
	clearErr error  // the next Clear fails with it
	kind     string // the type of the plugins it hosts: "secret" unless set
}

func (s *fakeStore) Mount(_ context.Context, name string) (*Mount, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mounts[name], nil
}

func (s *fakeStore) Mounts(context.Context) ([]*Mount, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ms []*Mount
	for _, m := range s.mounts {
		ms = append(ms, m)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
	return ms, nil
}

func (s *fakeStore) ToRun(_ context.Context, plugin string) (runtime.Plugin, runtime.Runtime, error) {
	kind := s.kind
	if kind == "" {
		kind = "secret"
	}
	return runtime.Plugin{Type: kind, Name: plugin, Image: "example/" + plugin, Version: "v1.0.0"}, runtime.Runtime{}, nil
}

func (s *fakeStore) Published(ctx context.Context) (map[string]string, error) {
	se, err := s.storage.Get(ctx, "published")
	if err != nil || se == nil {
		return nil, err
	}
	var byName map[string]string
	return byName, se.DecodeJSON(&byName)
}

func (s *fakeStore) PutPublished(ctx context.Context, byName map[string]string) error {
	if byName == nil {
		return s.storage.Delete(ctx, "published")
	}
	se, err := logical.StorageEntryJSON("published", byName)
	if err == nil {
		err = s.storage.Put(ctx, se)
	}
	return err
}

func (s *fakeStore) Data(uuid string) logical.Storage {
	return logical.NewStorageView(&s.storage, "hosted/"+uuid+"/")
}

func (s *fakeStore) Leases(ctx context.Context, uuid string) (int, error) {
	se, err := s.storage.Get(ctx, "leases/"+uuid)
	if err != nil || se == nil {
		return 0, err
	}
	var n int
	return n, se.DecodeJSON(&n)
}

func (s *fakeStore) PutLeases(ctx context.Context, uuid string, n int) error {
	se, _ := logical.StorageEntryJSON("leases/"+uuid, n)
	return s.storage.Put(ctx, se)
}

func (s *fakeStore) PutPaths(_ context.Context, name, uuid string, paths Paths) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.mounts[name]; m != nil && m.UUID == uuid && !m.Paths.Equal(paths) {
		updated := *m
		updated.Paths = paths
		s.mounts[name] = &updated
	}
	return nil
}

func (s *fakeStore) Clear(ctx context.Context, uuid string) error {
	s.mu.Lock()
	s.cleared = append(s.cleared, uuid)
	failing := s.clearErr
	s.clearErr = nil
	s.mu.Unlock()
	if failing != nil {
		return failing
	}
	if err := logical.ClearView(ctx, s.Data(uuid)); err != nil {
		return err
	}
	return s.storage.Delete(ctx, "leases/"+uuid)
}

// testHost is a host on a fake engine and store, closed when the test ends.
type testHost struct {
	*Host
	engine *fakeEngine
	store  *fakeStore
}

func newTestHost(t *testing.T, e *fakeEngine) *testHost {
	t.Helper()
	return newTestHostWith(t, e, nil)
}

// newTestHostWith is newTestHost with a config of the test's.
func newTestHostWith(t *testing.T, e *fakeEngine, configure func(*Config)) *testHost {
	t.Helper()
	if e == nil {
		e = &fakeEngine{}
	}
	s := &fakeStore{mounts: map[string]*Mount{}}
	cfg := Config{Store: s, Start: e.start, System: func() logical.SystemView { return logical.TestSystemView() }}
	if configure != nil {
		configure(&cfg)
	}
	h := New(cfg)
	t.Cleanup(func() { h.Close(context.Background()) })
	return &testHost{Host: h, engine: e, store: s}
}

// mount creates a hosted mount as the catalog does: the host starts it,
// then it is stored.
func (th *testHost) mount(t *testing.T, name, plugin string) *Mount {
	t.Helper()
	m := &Mount{Name: name, Plugin: plugin}
	if err := th.Put(context.Background(), m, nil); err != nil {
		t.Fatalf("mounting %s: %v", name, err)
	}
	th.store.mu.Lock()
	th.store.mounts[name] = m
	th.store.mu.Unlock()
	return m
}

// read sends a read of path under the mount mounted at runtimes/.
func (th *testHost) read(ctx context.Context, name, path string) (*logical.Response, error) {
	return th.Forward(ctx, name, path, &logical.Request{Operation: logical.ReadOperation, Path: Prefix + name + "/" + path, MountPoint: "runtimes/"})
}

func (th *testHost) status(t *testing.T, name string) Status {
	t.Helper()
	m, _ := th.store.Mount(context.Background(), name)
	if m == nil {
		t.Fatalf("no mount %s", name)
	}
	return th.Status(context.Background(), m)
}

// containerOf returns a function of a request's answer: the container
// that served it.
func containerOf(t *testing.T) func(*logical.Response, error) string {
	return func(resp *logical.Response, err error) string {
		t.Helper()
		if err != nil {
			t.Fatalf("request: %v", err)
		}
		return resp.Data["container"].(string)
	}
}

var errNotCoded = errors.New("not a coded error")

// codeOf is the HTTP status a host error answers with.
func codeOf(err error) (int, error) {
	var coded logical.HTTPCodedError
	if errors.As(err, &coded) {
		return coded.Code(), nil
	}
	return 0, errNotCoded
}

// pingEngines answers pings only when up: how the host asks whether an
// engine is back. It has nothing to reap.
type pingEngines struct {
	up    atomic.Bool
	asked atomic.Int32
}

func (e *pingEngines) Ping(context.Context, runtime.Runtime) error {
	e.asked.Add(1)
	if !e.up.Load() {
		return errors.New("connection refused")
	}
	return nil
}

func (e *pingEngines) Address(rt runtime.Runtime) string { return rt.Engine }

func (e *pingEngines) ReapOrphans(context.Context, runtime.Runtime, string) (int, error) {
	return 0, nil
}
