package runtimecatalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"

	"github.com/docker/docker/client"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	vaultplugin "github.com/hashicorp/vault/sdk/plugin"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

const (
	pathRunConfigHelpSyn  = "Show the Docker Engine create request for a container plugin."
	pathRunConfigHelpDesc = `
Returns the exact container create request (config, host_config,
networking_config, as the Docker Engine API names them) that starting the
plugin with its runtime sends. Values only known when a plugin starts are
shown as placeholders and listed in "set_at_start".
`
	pathCheckHelpSyn  = "Start a container plugin once, to prove it runs."
	pathCheckHelpDesc = `
Starts the plugin's container with its runtime, completes the go-plugin
handshake with the Vault plugin inside, asks its version and stops it,
returning how long each step took. A failure says why: unknown OCI runtime,
missing image, SHA256 mismatch, or the exit code with the last output
lines. No container is left behind.
`
	placeholderSocketDir = "<socket directory, created at start>"
	placeholderValue     = "<set by go-plugin at start>"
)

func pathPluginRun(b *backend) []*framework.Path {
	fields := map[string]*framework.FieldSchema{"type": pluginTypeField(), "name": {Type: framework.TypeString, Description: "Name of the plugin."}}
	return []*framework.Path{
		{
			Pattern:      "plugins/catalog/" + framework.GenericNameRegex("type") + "/" + framework.GenericNameRegex("name") + "/run-config$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "runtime-catalog", OperationSuffix: "plugin-run-config"},
			Fields:       fields,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{
					Callback: b.pathPluginRunConfig, Summary: pathRunConfigHelpSyn,
					Responses: map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
						"config":            {Type: framework.TypeMap, Description: "The container's config (Docker Engine API ContainerConfig)."},
						"host_config":       {Type: framework.TypeMap, Description: "The container's host config (Docker Engine API HostConfig)."},
						"networking_config": {Type: framework.TypeMap, Description: "The container's networking config."},
						"set_at_start":      {Type: framework.TypeStringSlice, Description: "Values shown as placeholders, filled when the plugin starts."},
					}}}},
				},
			},
			HelpSynopsis: pathRunConfigHelpSyn, HelpDescription: pathRunConfigHelpDesc,
		},
		{
			Pattern:      "plugins/catalog/" + framework.GenericNameRegex("type") + "/" + framework.GenericNameRegex("name") + "/check$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "runtime-catalog", OperationSuffix: "plugin-check"},
			Fields:       fields,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: &framework.PathOperation{
					Callback: b.pathPluginCheck, Summary: pathCheckHelpSyn,
					Responses: map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
						"plugin_version": {Type: framework.TypeString, Description: "Version the plugin reported."},
						"container_id":   {Type: framework.TypeString, Description: "ID of the container that ran (now removed)."},
						"image":          {Type: framework.TypeString, Description: "Image reference the container ran."},
						"oci_runtime":    {Type: framework.TypeString, Description: "OCI runtime the container ran with."},
						"create_ms":      {Type: framework.TypeFloat, Description: "Milliseconds to create the container."},
						"start_ms":       {Type: framework.TypeFloat, Description: "Milliseconds to start it."},
						"handshake_ms":   {Type: framework.TypeFloat, Description: "Milliseconds from its start to the end of the go-plugin handshake."},
						"total_ms":       {Type: framework.TypeFloat, Description: "Milliseconds for the whole check, stopping and removal included."},
					}}}},
				},
			},
			HelpSynopsis: pathCheckHelpSyn, HelpDescription: pathCheckHelpDesc,
		},
	}
}

// toRuntime is the plugin as the runtime package runs it.
func (p *pluginEntry) toRuntime() runtime.Plugin {
	return runtime.Plugin{
		Name: p.Name, Type: p.Type, Version: p.Version, Image: p.OCIImage, SHA256: p.SHA256,
		Command: p.Command, Args: p.Args, Env: p.Env,
	}
}

// toRuntime is the runtime's settings as the runtime package uses them.
func (r *runtimeEntry) toRuntime() runtime.Runtime {
	return runtime.Runtime{
		Name: r.Name, OCIRuntime: r.OCIRuntime, CgroupParent: r.CgroupParent,
		NanoCPUs: r.CPUNanos, MemoryBytes: r.MemoryBytes, Rootless: r.Rootless,
	}
}

// pluginAndRuntime looks up a plugin and the runtime it references, as they
// are now: a runtime edited since registration applies at the next start.
func (b *backend) pluginAndRuntime(ctx context.Context, req *logical.Request, d *framework.FieldData) (*pluginEntry, runtime.Runtime, *logical.Response, error) {
	pluginType, name, err := pluginFromPath(d)
	if err != nil {
		return nil, runtime.Runtime{}, logical.ErrorResponse(err.Error()), nil
	}
	if err := b.index.ensure(ctx, req.Storage); err != nil {
		return nil, runtime.Runtime{}, nil, err
	}
	p := b.index.plugin(pluginType + "/" + name)
	if p == nil {
		return nil, runtime.Runtime{}, nil, logical.CodedError(http.StatusNotFound, fmt.Sprintf("no plugin %s/%s", pluginType, name))
	}
	var rt runtime.Runtime
	if p.Runtime != "" {
		r := b.index.runtime(p.Runtime)
		if r == nil {
			return nil, runtime.Runtime{}, nil, fmt.Errorf("plugin %s references runtime %q, which does not exist", p.id(), p.Runtime)
		}
		rt = r.toRuntime()
	}
	return p, rt, nil, nil
}

func (b *backend) pathPluginRunConfig(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	p, rt, resp, err := b.pluginAndRuntime(ctx, req, d)
	if resp != nil || err != nil {
		return resp, err
	}
	clusterID, vaultVersion, mlock := b.vaultHost(ctx)
	// go-plugin's handshake variables, as its client adds them at start.
	goPluginEnv := []string{
		vaultplugin.HandshakeConfig.MagicCookieKey + "=" + vaultplugin.HandshakeConfig.MagicCookieValue,
		"PLUGIN_PROTOCOL_VERSIONS=4,5",
		"PLUGIN_CLIENT_CERT=" + placeholderValue,
		"PLUGIN_MULTIPLEX_GRPC=true",
		fmt.Sprintf("%s=%d", plugin.EnvUnixSocketGroup, os.Getegid()),
		plugin.EnvUnixSocketDir + "=" + placeholderSocketDir,
	}
	rc, err := runtime.BuildRunConfig(p.toRuntime(), rt, runtime.Host{
		PID: os.Getpid(), ClusterID: clusterID, GroupID: os.Getegid(), MLock: mlock,
		BaseEnv: goPluginEnv, SDKEnv: runtime.SDKEnv(vaultVersion, mlock), SocketDir: placeholderSocketDir,
	}, runtime.DefaultHardening)
	if err != nil {
		return nil, err
	}
	// Through JSON, so the response carries the Docker Engine API's names.
	encoded, err := json.Marshal(rc)
	if err != nil {
		return nil, err
	}
	var data map[string]interface{}
	if err := json.Unmarshal(encoded, &data); err != nil {
		return nil, err
	}
	data["set_at_start"] = []string{"PLUGIN_CLIENT_CERT (a fresh client certificate)", "the socket directory (bind mount source)"}
	return &logical.Response{Data: data}, nil
}

func (b *backend) pathPluginCheck(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	p, rt, resp, err := b.pluginAndRuntime(ctx, req, d)
	if resp != nil || err != nil {
		return resp, err
	}
	docker, err := b.dockerClient()
	if err != nil {
		return nil, logical.CodedError(http.StatusBadGateway, "connecting to the Docker Engine: "+err.Error())
	}
	clusterID, vaultVersion, mlock := b.vaultHost(ctx)
	plug := p.toRuntime()
	result, err := runtime.Check(ctx, docker, plug, rt, runtime.CheckOptions{
		ClusterID: clusterID, VaultVersion: vaultVersion, MLock: mlock,
		Hardening: runtime.DefaultHardening, Logger: b.Logger().Named("check"),
	})
	if err != nil {
		msg := fmt.Sprintf("plugin %s did not start: %v", p.id(), err)
		for _, configErr := range []error{runtime.ErrImageMissing, runtime.ErrSHA256Mismatch, runtime.ErrUnknownOCIRuntime, runtime.ErrContainerExited} {
			if errors.Is(err, configErr) {
				return logical.ErrorResponse(msg), nil // the registration or runtime is at fault
			}
		}
		return nil, logical.CodedError(http.StatusBadGateway, msg)
	}
	ms := func(d interface{ Seconds() float64 }) float64 { return d.Seconds() * 1000 }
	return &logical.Response{Data: map[string]interface{}{
		"plugin_version": result.PluginVersion,
		"container_id":   result.ContainerID,
		"image":          plug.ImageRef(),
		"oci_runtime":    rt.EffectiveOCIRuntime(),
		"create_ms":      ms(result.Create),
		"start_ms":       ms(result.Start),
		"handshake_ms":   ms(result.Handshake),
		"total_ms":       ms(result.Total),
	}}, nil
}

// vaultHost is what the Vault running this plugin tells containers: its
// cluster ID and version (informational: empty when Vault has none) and
// whether mlock is on.
func (b *backend) vaultHost(ctx context.Context) (clusterID, vaultVersion string, mlock bool) {
	sys := b.System()
	clusterID, _ = sys.ClusterID(ctx)
	vaultVersion, _ = sys.VaultVersion(ctx)
	return clusterID, vaultVersion, sys.MlockEnabled()
}

// dockerOnce holds the backend's Docker client, made on first use: mounts
// that never run a plugin never connect.
type dockerOnce struct {
	once   sync.Once
	client *client.Client
	err    error
}

func (b *backend) dockerClient() (*client.Client, error) {
	b.docker.once.Do(func() { b.docker.client, b.docker.err = runtime.NewDockerClient() })
	return b.docker.client, b.docker.err
}
