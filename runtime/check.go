package runtime

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/docker/docker/client"
	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"github.com/hashicorp/go-uuid"
	"github.com/hashicorp/vault/sdk/helper/pluginutil"
	"github.com/hashicorp/vault/sdk/logical"
	vaultplugin "github.com/hashicorp/vault/sdk/plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// CheckOptions are the host side of a check.
type CheckOptions struct {
	ClusterID    string
	VaultVersion string
	MLock        bool
	Hardening    Hardening
	// SocketRoot is where go-plugin makes the socket directory; keep it
	// short, Unix socket paths are limited to about 108 bytes. Default /tmp.
	SocketRoot   string
	StartTimeout time.Duration // default 30s
	Logger       hclog.Logger
}

// CheckResult is what a successful check measured.
type CheckResult struct {
	ContainerID   string
	PluginVersion string
	Create        time.Duration // ContainerCreate
	Start         time.Duration // ContainerStart
	Handshake     time.Duration // from the start until go-plugin's handshake completed
	Total         time.Duration // everything, stopping and removal included
}

// NewDockerClient connects to the Docker Engine the environment names
// (DOCKER_HOST, or the default socket), negotiating the API version so an
// older engine (20.10 speaks 1.41) is understood.
func NewDockerClient() (*client.Client, error) {
	return client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
}

// SDKEnv is the environment Vault's SDK gives a containerized plugin.
func SDKEnv(vaultVersion string, mlock bool) []string {
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

// Running is a started plugin: its container, the go-plugin client that
// completed the handshake, and a backend set up in it.
type Running struct {
	Runner  *Runner
	Backend logical.Backend
	client  *plugin.Client
	began   time.Time
	// Handshake is the time from the container's start to the end of
	// go-plugin's handshake.
	Handshake time.Duration
}

// Start runs the plugin's container, completes the go-plugin handshake with
// the Vault plugin inside and sets up a backend in it. On failure nothing is
// left running and the error says why: unknown OCI runtime, missing image,
// SHA256 mismatch, or the exit code with the last output lines.
func Start(ctx context.Context, docker *client.Client, p Plugin, r Runtime, o CheckOptions) (*Running, error) {
	began := time.Now()
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.SocketRoot == "" {
		o.SocketRoot = "/tmp"
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 30 * time.Second
	}
	multiplexID, err := uuid.GenerateUUID()
	if err != nil {
		return nil, err
	}

	running := &Running{began: began}
	var buildErr error
	running.client = plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: vaultplugin.HandshakeConfig,
		VersionedPlugins: map[int]plugin.PluginSet{
			4: {"backend": &vaultplugin.GRPCBackendPlugin{}},
			5: {"backend": &vaultplugin.GRPCBackendPlugin{MultiplexingSupport: true}},
		},
		RunnerFunc: func(logger hclog.Logger, cmd *exec.Cmd, socketDir string) (runner.Runner, error) {
			rc, err := BuildRunConfig(p, r, Host{
				PID: os.Getpid(), ClusterID: o.ClusterID, GroupID: os.Getegid(), MLock: o.MLock,
				BaseEnv: cmd.Env, SDKEnv: SDKEnv(o.VaultVersion, o.MLock), SocketDir: socketDir,
			}, o.Hardening)
			if err != nil {
				buildErr = err
				return nil, err
			}
			running.Runner = NewRunner(docker, logger, p, rc, socketDir, r.Rootless)
			return running.Runner, nil
		},
		UnixSocketConfig:    &plugin.UnixSocketConfig{Group: strconv.Itoa(os.Getegid()), TempDir: o.SocketRoot},
		AllowedProtocols:    []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:            true,
		SkipHostEnv:         true,
		GRPCBrokerMultiplex: true,
		StartTimeout:        o.StartTimeout,
		Logger:              o.Logger,
		// A multiplexed Vault plugin finds the backend instance a call is for
		// by this ID in the call's metadata.
		GRPCDialOptions: []grpc.DialOption{grpc.WithUnaryInterceptor(
			func(ctx context.Context, method string, req, reply interface{}, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				ctx = metadata.AppendToOutgoingContext(ctx, pluginutil.MultiplexingCtxKey, multiplexID)
				return invoker(ctx, method, req, reply, cc, opts...)
			})},
	})

	rpc, err := running.client.Client()
	if err != nil {
		run := running.Runner
		running.Stop(ctx)
		switch {
		case buildErr != nil:
			return nil, buildErr
		case run == nil || run.ID() == "": // failed before or at create: the error says why
			return nil, err
		default:
			return nil, run.Failure(err)
		}
	}
	running.Handshake = time.Since(began) - running.Runner.Created - running.Runner.Started

	raw, err := rpc.Dispense("backend")
	if err != nil {
		running.Stop(ctx)
		return nil, fmt.Errorf("handshake done, but the plugin serves no Vault backend: %w", err)
	}
	backend, ok := raw.(logical.Backend)
	if !ok {
		running.Stop(ctx)
		return nil, fmt.Errorf("handshake done, but the plugin's backend is a %T", raw)
	}
	sys := logical.StaticSystemView{VersionString: o.VaultVersion}
	if err := backend.Setup(ctx, &logical.BackendConfig{StorageView: &logical.InmemStorage{}, Logger: o.Logger, System: sys, BackendUUID: multiplexID}); err != nil {
		running.Stop(ctx)
		return nil, fmt.Errorf("setting up the plugin's backend: %w", err)
	}
	running.Backend = backend
	return running, nil
}

// Stop cleans the backend up, ends the plugin and waits until the engine has
// removed its container.
func (r *Running) Stop(ctx context.Context) {
	if r.Backend != nil {
		r.Backend.Cleanup(ctx)
	}
	r.client.Kill() // asks the plugin to exit, then stops the container
	if r.Runner != nil {
		r.Runner.awaitRemoval(30 * time.Second)
	}
}

// Check starts the plugin, asks its version and stops it, timing each step.
func Check(ctx context.Context, docker *client.Client, p Plugin, r Runtime, o CheckOptions) (*CheckResult, error) {
	began := time.Now()
	running, err := Start(ctx, docker, p, r, o)
	if err != nil {
		return nil, err
	}
	result := &CheckResult{
		ContainerID: running.Runner.ID(),
		Create:      running.Runner.Created,
		Start:       running.Runner.Started,
		Handshake:   running.Handshake,
	}
	if versioner, ok := running.Backend.(logical.PluginVersioner); ok {
		result.PluginVersion = versioner.PluginVersion().Version
	}
	running.Stop(ctx)
	result.Total = time.Since(began)
	return result, nil
}
