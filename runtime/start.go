package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"github.com/hashicorp/vault/sdk/helper/pluginutil"
	"github.com/hashicorp/vault/sdk/logical"
	vaultplugin "github.com/hashicorp/vault/sdk/plugin"
	"google.golang.org/grpc"
)

// Options are the host's side of starting a plugin.
type Options struct {
	ClusterID    string
	VaultVersion string
	MLock        bool
	// Hardening is what the container gets beyond Vault's settings; nil
	// means DefaultHardening().
	Hardening *Hardening
	// SocketRoot is where go-plugin makes the socket directory; keep it
	// short, Unix socket paths are limited to about 108 bytes. Default
	// OwnSocketRoot().
	SocketRoot   string
	StartTimeout time.Duration // default 30s; a pull has its own bound
	// Auth gives a registry's credentials for a pull, or nil; PullTimeout
	// bounds a pull (DefaultPullTimeout when 0).
	Auth        func(registry string) *RegistryAuth
	PullTimeout time.Duration
	Logger      hclog.Logger
	// RedactEnv makes a preview show the values of the registration's env
	// variables as RedactedValue (they may be secrets, which reads never
	// show); a start ignores it.
	RedactEnv bool
	// MaxResponseBytes bounds each message the plugin sends back (a
	// request's answer); 0 leaves gRPC's bound of 2 GiB. A larger message
	// is refused before it is read into memory (codes.ResourceExhausted).
	MaxResponseBytes int
}

func (o Options) withDefaults() Options {
	if o.Hardening == nil {
		h := DefaultHardening()
		o.Hardening = &h
	}
	if o.SocketRoot == "" {
		o.SocketRoot = OwnSocketRoot()
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	return o
}

// Placeholders stand in a preview for what only exists once a plugin
// starts.
const (
	PlaceholderSocketDir  = "<socket directory, created at start>"
	PlaceholderClientCert = "<client certificate, generated at start>"
	envClientCert         = "PLUGIN_CLIENT_CERT"
)

// SetAtStartCert names the client certificate among a preview's
// placeholders; an engine adds its own.
const SetAtStartCert = envClientCert + " (a fresh client certificate for go-plugin's mTLS)"

// errPreviewed stops go-plugin once it has handed over the environment.
var errPreviewed = errors.New("run config previewed")

// PreviewRun is what starting p with r asks engine to run, produced by the
// same code as a start (go-plugin builds the environment and calls the same
// runner function), stopped before anything reaches the engine. What only
// exists at start is replaced by the placeholders above, and under
// RedactEnv the values of the registration's env variables by RedactedValue.
func PreviewRun(engine Engine, p Plugin, r Runtime, o Options) (Preview, error) {
	o = o.withDefaults()
	var spec *Spec
	var socketDir string
	client := plugin.NewClient(clientConfig(p, r, o, func(built Spec) (runner.Runner, error) {
		spec = &built
		return nil, errPreviewed
	}, func(dir string) { socketDir = dir }))
	_, err := client.Start()
	if socketDir != "" {
		os.RemoveAll(socketDir) // go-plugin made it for a start that never came
	}
	if spec == nil {
		return Preview{}, err
	}
	env := append([]string(nil), spec.Host.BaseEnv...)
	for i, kv := range env {
		if strings.HasPrefix(kv, envClientCert+"=") {
			env[i] = envClientCert + "=" + PlaceholderClientCert
		}
	}
	spec.Host.BaseEnv, spec.Host.SocketDir = env, PlaceholderSocketDir
	for _, kv := range p.Env {
		if !o.RedactEnv {
			break
		}
		key, _, _ := strings.Cut(kv, "=")
		spec.Host.Redact = append(spec.Host.Redact, key)
	}
	return engine.Preview(*spec)
}

// sdkEnv is the environment Vault's SDK gives a containerized plugin.
func sdkEnv(vaultVersion string, mlock bool) []string {
	env := []string{
		pluginutil.PluginVaultVersionEnv + "=" + vaultVersion,
		pluginutil.PluginMetadataModeEnv + "=false",
		pluginutil.PluginAutoMTLSEnv + "=true",
	}
	if mlock {
		env = append(env, pluginutil.PluginMlockEnabled+"=true")
	}
	return env
}

// clientConfig is go-plugin's configuration for running p with r on
// engine. newContainer gets the start's spec, built from go-plugin's
// environment and the socket directory it made; every socket directory made
// is reported to made, so a failed start can remove it (go-plugin removes
// it only after a container existed).
func clientConfig(p Plugin, r Runtime, o Options, newContainer func(Spec) (runner.Runner, error), made func(string)) *plugin.ClientConfig {
	return &plugin.ClientConfig{
		HandshakeConfig: vaultplugin.HandshakeConfig,
		VersionedPlugins: map[int]plugin.PluginSet{
			4: {"backend": &vaultplugin.GRPCBackendPlugin{}},
			5: {"backend": &vaultplugin.GRPCBackendPlugin{MultiplexingSupport: true}},
		},
		RunnerFunc: func(logger hclog.Logger, cmd *exec.Cmd, socketDir string) (runner.Runner, error) {
			if made != nil {
				made(socketDir)
			}
			return newContainer(Spec{
				Plugin: p, Runtime: r, Hardening: *o.Hardening, Auth: o.Auth, PullTimeout: o.PullTimeout, Logger: o.Logger,
				Host: Host{
					PID: os.Getpid(), Owner: Owner(), OwnerBoot: OwnerBoot(), ClusterID: o.ClusterID, GroupID: os.Getegid(), MLock: o.MLock,
					BaseEnv: cmd.Env, SDKEnv: sdkEnv(o.VaultVersion, o.MLock), SocketDir: socketDir,
				},
			})
		},
		UnixSocketConfig: &plugin.UnixSocketConfig{Group: strconv.Itoa(os.Getegid()), TempDir: o.SocketRoot},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		SkipHostEnv:      true,
		// No broker multiplexing (yamux over the one connection): each
		// brokered service gets a socket of its own, which the engine makes
		// reachable from the container (its Container's HostToPlugin), and
		// which serves a hosted read a third faster (README, figures).
		StartTimeout: o.StartTimeout,
		Logger:       o.Logger,
	}
}

// Running is a started plugin: its container and the go-plugin client that
// completed the handshake with the Vault plugin inside. Backends are set up
// in it with Backend, one per mount.
type Running struct {
	// container runs the plugin for go-plugin, and state is its record;
	// both are set once go-plugin calls the runner function.
	container Container
	state     *State
	client    *plugin.Client
	rpc       plugin.ClientProtocol
	conn      *grpc.ClientConn
	name      string
	// maxResponse bounds each message from the plugin (0: gRPC's own).
	maxResponse int
	// Handshake is the time from the container's start to the end of
	// go-plugin's handshake.
	Handshake time.Duration
	stopOnce  sync.Once
	// sampler keeps the container's newest figures; nil when its engine
	// gives none.
	sampler *usageSampler
}

// Start runs the plugin's container on engine and completes the go-plugin
// handshake with the Vault plugin inside. On failure nothing is left,
// neither container nor socket directory, and the error says why: unknown
// OCI runtime, missing image, SHA256 mismatch, or the exit code with the
// last output lines.
func Start(ctx context.Context, engine Engine, p Plugin, r Runtime, o Options) (*Running, error) {
	running, err := start(ctx, engine, p, r, o)
	if err != nil && !errors.Is(err, ErrStartAbandoned) {
		if why := engineDown(engine, err); why != nil {
			return nil, fmt.Errorf("%w: the engine at %s: %v", ErrEngineUnreachable, engine.Address(), why)
		}
	}
	return running, err
}

// ErrEngineUnreachable marks a start that failed because its engine did not
// answer (restarting, down): no fault of the plugin's.
var ErrEngineUnreachable = errors.New("the engine does not answer")

// engineDown says why the engine did not answer, when a start's failure err
// was its doing: a call that could not connect says so itself; one that
// failed otherwise is asked about, as the engine may have gone meanwhile
// (an idle connection kept from before can still answer while new ones are
// refused, so the error comes first). Nil when the engine answers.
func engineDown(engine Engine, err error) error {
	if engine.Unreachable(err) {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return engine.Ping(ctx)
}

func start(ctx context.Context, engine Engine, p Plugin, r Runtime, o Options) (*Running, error) {
	began := time.Now()
	o = o.withDefaults()
	running := &Running{name: p.Name, maxResponse: o.MaxResponseBytes}
	var socketDir string
	var made sync.Mutex // the container and socket directory, made in go-plugin's Start
	running.client = plugin.NewClient(clientConfig(p, r, o, func(spec Spec) (runner.Runner, error) {
		c, err := engine.Container(spec)
		if err != nil {
			return nil, err
		}
		made.Lock()
		defer made.Unlock()
		running.container, running.state = c, c.State()
		return c, nil
	}, func(dir string) { made.Lock(); socketDir = dir; made.Unlock() }))

	rpc, err := running.connect(ctx, func() (Container, string) {
		made.Lock()
		defer made.Unlock()
		return running.container, socketDir
	})
	if errors.Is(err, ErrStartAbandoned) {
		return nil, err
	}
	made.Lock()
	defer made.Unlock()
	if err != nil {
		c := running.container
		running.Stop(ctx)
		if socketDir != "" {
			os.RemoveAll(socketDir)
		}
		if c == nil || c.ID() == "" { // failed before or at create: the error says why
			return nil, err
		}
		if handshakeTimedOut(err) {
			return nil, c.State().HandshakeFailure(o.StartTimeout)
		}
		return nil, c.State().Failure(err)
	}
	running.rpc = rpc
	if grpcClient, ok := rpc.(*plugin.GRPCClient); ok {
		running.conn = grpcClient.Conn
	} else {
		running.Stop(ctx)
		return nil, fmt.Errorf("the plugin speaks %T, not gRPC", rpc)
	}
	st := running.state
	running.Handshake = time.Since(began) - st.Created - st.Started
	st.Connected()
	if source := running.container.Usage(); source != nil {
		running.sampler = startSampler(source, running.container.ID())
	}
	return running, nil
}

// Multiplexed reports whether the plugin serves several backends at once
// (it called ServeMultiplex), so several mounts can share its container.
func (r *Running) Multiplexed(ctx context.Context) (bool, error) {
	return pluginutil.MultiplexingSupported(ctx, r.conn, r.name)
}

// Backend sets up a backend in the plugin for one mount. Every call it makes
// carries id as its multiplexing ID, so a multiplexed plugin keeps each
// mount's backend apart; a plugin that is not multiplexed has one backend,
// the last set up. Cleaning the backend up does not stop the container:
// that is Stop's.
func (r *Running) Backend(ctx context.Context, id string, conf *logical.BackendConfig) (logical.Backend, error) {
	b, err := vaultplugin.Dispense(r.rpc, &muxClient{ClientProtocol: r.rpc, conn: r.muxConn(id)})
	if err != nil {
		return nil, fmt.Errorf("handshake done, but the plugin serves no Vault backend: %w", err)
	}
	if err := b.Setup(ctx, conf); err != nil {
		// A plugin killed during its Setup (by its memory limit, say) breaks
		// the connection: its exit says why.
		return nil, r.state.ExplainCall(fmt.Errorf("setting up the plugin's backend: %w", err))
	}
	return b, nil
}

// Conn is the connection to the plugin seen through one backend's ID, for
// calls made without Vault's SDK client (a request passed through as it
// arrived).
func (r *Running) Conn(id string) grpc.ClientConnInterface { return r.muxConn(id) }

func (r *Running) muxConn(id string) muxConn { return muxConn{r.conn, id, r.maxResponse} }

// ID is the ID of the plugin's container (or pod).
func (r *Running) ID() string { return r.container.ID() }

// Explain explains a call to the plugin that failed because the plugin is
// gone: its exit code and last output, when its container exited.
func (r *Running) Explain(cause error) error { return r.state.ExplainCall(cause) }

// MemoryKilled reports whether the plugin's container was killed by the
// kernel past its memory limit: by the engine's oom event where it sends
// one (Docker), else by SIGKILL (exit code 137) under a limit.
func (r *Running) MemoryKilled() bool {
	reason := r.exitReason()
	return reason == ExitMemoryLimit || reason == ExitMemoryOrSignal // Podman: the likeliest cause of a SIGKILL under a limit
}

// Panicked reports whether the plugin exited as a Go program does when it
// panics or hits a fatal error: code 2, with the panic in its output.
func (r *Running) Panicked() bool { return r.exitReason() == ExitPanicked }

// exitReason is the exit's reason once the container exited, else "".
func (r *Running) exitReason() string {
	done, code := r.state.Exited()
	if !done {
		return ""
	}
	reason, _ := r.state.exitReason(code)
	return reason
}

// Exited reports whether the plugin's process has ended (its container
// exited or was killed).
func (r *Running) Exited() bool {
	return r.client.Exited()
}

// Leaving is closed once the engine is taking the container away: a new
// one should serve the requests that come next (see State.Leave).
func (r *Running) Leaving() <-chan struct{} { return r.state.Leaving() }

// Stop ends the plugin and waits until the engine has removed its
// container. It may be called more than once.
func (r *Running) Stop(ctx context.Context) {
	r.stopOnce.Do(func() {
		if r.sampler != nil {
			defer r.sampler.close()
		}
		r.client.Kill() // asks the plugin to exit, then stops the container
		if r.container != nil {
			r.container.AwaitRemoval(30 * time.Second)
			r.state.GiveUp() // go-plugin's Kill skips the runner's after a graceful exit
		}
	})
}
