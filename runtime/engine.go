package runtime

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin/runner"
)

// Engine is one engine that runs plugin containers, at one address: what
// starting, checking and reaping plugins, and the catalog's checks of a
// runtime, ask of any kind of engine. Each kind is a package of its own
// under runtime/ (runtime/docker speaks the Docker Engine API, for Docker
// and Podman); what a kind cannot honour of a runtime it refuses itself:
// in Preview and Container what the request cannot say, at its
// container's Start what only the engine can tell.
type Engine interface {
	// Address is where the engine is reached, as messages name it.
	Address() string
	// Ping is nil when the engine answers, else why not.
	Ping(ctx context.Context) error
	// Facts is what the engine says of the OCI runtimes it runs.
	Facts(ctx context.Context) (EngineFacts, error)
	// Unreachable reports whether err, a call's failure, is the engine not
	// answering at all (nothing listens, the connection is refused), rather
	// than an answer of its.
	Unreachable(err error) bool
	// Preview is what a start of spec asks the engine to run (the Docker
	// Engine's create request, a pod), as run-config shows it: its Request
	// encodes to JSON in the engine's own names.
	Preview(spec Spec) (Preview, error)
	// Container prepares a start of spec: go-plugin drives it as its
	// runner, and nothing reaches the engine until its Start.
	Container(spec Spec) (Container, error)
	// ReapOrphans removes the plugin containers that processes of this
	// plugin, now gone (Orphaned), left for cluster clusterID, and returns
	// their IDs. Containers of a live process, of another cluster or of
	// anything else are never touched.
	ReapOrphans(ctx context.Context, clusterID string) ([]string, error)
	// Close releases the engine's connections.
	Close() error
}

// Spec is one start of a plugin: everything an engine needs to run it.
type Spec struct {
	Plugin    Plugin
	Runtime   Runtime
	Host      Host
	Hardening Hardening
	// Auth gives a registry's credentials for a pull, or nil; PullTimeout
	// bounds a pull (DefaultPullTimeout when 0).
	Auth        func(registry string) *RegistryAuth
	PullTimeout time.Duration
	Logger      hclog.Logger
}

// What names what the engine is asked to run, for messages: image, OCI
// runtime and, when the registration sets one, the command.
func (s Spec) What() string {
	what := fmt.Sprintf("image %s, OCI runtime %s", s.Plugin.ImageRef(), s.Runtime.EffectiveOCIRuntime())
	if s.Plugin.Command != "" {
		what += fmt.Sprintf(", command %q", []string{s.Plugin.Command})
	}
	return what
}

// Preview is what a start asks an engine to run, with what only exists
// once it starts shown as placeholders (named in SetAtStart).
type Preview struct {
	Request    any
	SetAtStart []string
}

// Container is one start of a plugin on its engine (a container, a pod):
// go-plugin's runner for it, which the engine implements, and its State,
// the one record of its life, which the engine fills in and everything
// else reads.
type Container interface {
	runner.Runner
	State() *State
	// AwaitRemoval waits until the engine has removed it (a stopped plugin
	// removes itself), removing it by force after timeout.
	AwaitRemoval(timeout time.Duration)
	// Usage is where its figures come from, or nil when its engine gives
	// none.
	Usage() UsageSource
}

// UsageSource gives a running container's figures, as its engine samples
// them.
type UsageSource interface {
	// FollowUsage calls each with every sample the engine sends, until ctx
	// ends (nil) or the stream does (why); ErrContainerGone when the
	// container is.
	FollowUsage(ctx context.Context, each func(Usage)) error
	// SampleUsage is one sample, asked now.
	SampleUsage(ctx context.Context) (Usage, error)
}

// ErrContainerGone is a container its engine no longer has.
var ErrContainerGone = errors.New("the container is gone")

// Engines are the engines by address, each dialled on first use (a mount
// that never runs a plugin never connects) and kept: an engine holds a pool
// of connections.
type Engines struct {
	// Dial makes the engine at an address, of the kind the address names.
	Dial    func(address string) (Engine, error)
	mu      sync.Mutex
	engines map[string]Engine
	facts   map[string]factsEntry
}

// FactsTTL is how long an engine's answer about its OCI runtimes is taken
// as still true: engines change their runtimes rarely, asking costs every
// runtime write a round trip (README, figures), and a start checks again.
const FactsTTL = 10 * time.Second

type factsEntry struct {
	facts EngineFacts
	err   error
	at    time.Time
}

// Facts is what the engine at address says of its OCI runtimes, asked at
// most once per FactsTTL. Silence is kept too: a write must not wait on a
// dead or hanging engine each time.
func (e *Engines) Facts(ctx context.Context, address string) (EngineFacts, error) {
	e.mu.Lock()
	cached, ok := e.facts[address]
	e.mu.Unlock()
	if ok && time.Since(cached.at) < FactsTTL {
		return cached.facts, cached.err
	}
	return e.FreshFacts(ctx, address)
}

// FreshFacts asks the engine at address now, and keeps the answer for Facts.
func (e *Engines) FreshFacts(ctx context.Context, address string) (EngineFacts, error) {
	engine, err := e.Get(address)
	var facts EngineFacts
	if err == nil {
		facts, err = engine.Facts(ctx)
	}
	e.mu.Lock()
	if e.facts == nil {
		e.facts = map[string]factsEntry{}
	}
	e.facts[address] = factsEntry{facts, err, time.Now()}
	e.mu.Unlock()
	return facts, err
}

// Get is the engine at address ("" for the environment's Docker Engine).
func (e *Engines) Get(address string) (Engine, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if engine, ok := e.engines[address]; ok {
		return engine, nil
	}
	if e.Dial == nil {
		return nil, errors.New("no engine kinds are known (Engines.Dial is not set)")
	}
	engine, err := e.Dial(address)
	if err != nil {
		return nil, err
	}
	if e.engines == nil {
		e.engines = map[string]Engine{}
	}
	e.engines[address] = engine
	return engine, nil
}

// Close closes every engine.
func (e *Engines) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for address, engine := range e.engines {
		engine.Close()
		delete(e.engines, address)
	}
}
