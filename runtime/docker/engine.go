package docker

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// Engine is a service speaking the Docker Engine API at one address: the
// Docker Engine, or a Podman service.
type Engine struct {
	// address is the runtime's engine setting ("" for the environment's
	// Docker Engine).
	address string
	// The client is made on first use (apiOnce), so that a preview never
	// needs one; dialErr is why it could not be made.
	apiOnce sync.Once
	api     API
	dialErr error
}

var _ runtime.Engine = (*Engine)(nil)

// New is the engine at address; nothing is asked of it, nor its client
// made, until it is used.
func New(address string) *Engine { return &Engine{address: address} }

// With is the engine that api reaches, at address as a runtime names it.
func With(api API, address string) *Engine {
	e := &Engine{address: address, api: api}
	e.apiOnce.Do(func() {})
	return e
}

// client is the engine's client, made once.
func (e *Engine) client() (API, error) {
	e.apiOnce.Do(func() {
		c, err := NewClient(e.address)
		if err != nil {
			e.dialErr = fmt.Errorf("connecting to the engine at %s: %w", Address(e.address), err)
			return
		}
		e.api = c
	})
	return e.api, e.dialErr
}

func (e *Engine) Address() string { return Address(e.address) }

func (e *Engine) Ping(ctx context.Context) error {
	api, err := e.client()
	if err == nil {
		_, err = api.ServerVersion(ctx)
	}
	return err
}

func (e *Engine) Unreachable(err error) bool { return unreachable(err, e.address) }

func (e *Engine) Close() error {
	if api, err := e.client(); err == nil {
		return api.Close()
	}
	return nil
}

// SetAtStart names the values a preview shows as placeholders.
var SetAtStart = []string{runtime.SetAtStartCert, "host_config.Mounts[0].Source (the socket directory)"}

// Preview is the create request a start of spec sends.
func (e *Engine) Preview(spec runtime.Spec) (runtime.Preview, error) {
	rc, err := BuildRunConfig(spec.Plugin, spec.Runtime, spec.Host, spec.Hardening)
	if err != nil {
		return runtime.Preview{}, err
	}
	return runtime.Preview{Request: rc, SetAtStart: SetAtStart}, nil
}

// Container prepares the container of a start of spec.
func (e *Engine) Container(spec runtime.Spec) (runtime.Container, error) {
	rc, err := BuildRunConfig(spec.Plugin, spec.Runtime, spec.Host, spec.Hardening)
	if err != nil {
		return nil, err
	}
	api, err := e.client()
	if err != nil {
		return nil, err
	}
	return newContainer(e, api, spec, rc), nil
}

// Facts asks the engine for its OCI runtimes.
func (e *Engine) Facts(ctx context.Context) (runtime.EngineFacts, error) {
	facts := runtime.EngineFacts{Address: e.Address()}
	api, err := e.client()
	if err != nil {
		return facts, err
	}
	info, err := api.Info(ctx)
	if err != nil {
		return facts, fmt.Errorf("the engine at %s could not be reached: %w", facts.Address, err)
	}
	for name := range info.Runtimes {
		facts.Runtimes = append(facts.Runtimes, name)
	}
	sort.Strings(facts.Runtimes)
	facts.DefaultRuntime = info.DefaultRuntime
	if e.isPodman(ctx) {
		// Its Docker-compatible API ignores the OCI runtime a container
		// asks for and runs every one under the service's default (Podman
		// 4.3), accepting any name silently.
		facts.OnlyDefault = true
		facts.Refuse = func(oci string) string {
			return fmt.Sprintf("the Podman service at %s runs every container under its default OCI runtime %s, whatever a "+
				"container asks for, and this runtime asks for %s: name a Podman service whose default runtime is %s "+
				"(containers.conf [engine] runtime) as the runtime's engine", facts.Address, facts.DefaultRuntime, oci, oci)
		}
	}
	return facts, nil
}

// isPodman reports whether the engine is a Podman service, by its version
// (cheaper than the info call).
func (e *Engine) isPodman(ctx context.Context) bool {
	api, err := e.client()
	if err != nil {
		return false
	}
	version, err := api.ServerVersion(ctx)
	if err != nil {
		return false
	}
	for _, c := range version.Components {
		if strings.Contains(c.Name, "Podman") {
			return true
		}
	}
	return false
}
