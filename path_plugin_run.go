package runtimecatalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/hosting"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/reqerr"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

const (
	pathRunConfigHelpSyn  = "Show what starting a container plugin asks its engine to run."
	pathRunConfigHelpDesc = `
Returns the exact request that starting the plugin with its runtime sends
its engine, in the engine API's own names: for the Docker Engine API (Docker,
Podman) the container create request (config, host_config,
networking_config), for Kubernetes the pod. Values only known when a plugin
starts are shown as placeholders and listed in "set_at_start". The values of
the plugin's registered env variables are redacted, as reads never return
them: the entry shows that a variable is set, not its value.
`
	pathCheckHelpSyn  = "Start a container plugin once, to prove it runs."
	pathCheckHelpDesc = `
Starts the plugin's container with its runtime, completes the go-plugin
handshake with the Vault plugin inside, asks its version and stops it,
returning how long each step took. A failure says why: unknown OCI runtime,
missing image, SHA256 mismatch, or the exit code with the last output
lines. No container is left behind.
`
)

func pathPluginRun(b *backend) []*framework.Path {
	fields := map[string]*framework.FieldSchema{"type": pluginTypeField(), "name": {Type: framework.TypeString, Description: "Name of the plugin."}}
	return []*framework.Path{
		{
			Pattern:      "plugins/catalog/" + framework.GenericNameRegex("type") + "/" + framework.GenericNameRegex("name") + "/run-config$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "plugin-run-config"},
			Fields:       fields,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{
					Callback: b.pathPluginRunConfig, Summary: pathRunConfigHelpSyn,
					Responses: map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
						"config":            {Type: framework.TypeMap, Description: "Docker Engine API: the container's config (ContainerConfig)."},
						"host_config":       {Type: framework.TypeMap, Description: "Docker Engine API: the container's host config (HostConfig)."},
						"networking_config": {Type: framework.TypeMap, Description: "Docker Engine API: the container's networking config."},
						"pod":               {Type: framework.TypeMap, Description: "Kubernetes: the pod (core/v1 Pod)."},
						"set_at_start":      {Type: framework.TypeStringSlice, Description: "Values shown as placeholders, filled when the plugin starts."},
					}}}},
				},
			},
			HelpSynopsis: pathRunConfigHelpSyn, HelpDescription: pathRunConfigHelpDesc,
		},
		{
			Pattern:      "plugins/catalog/" + framework.GenericNameRegex("type") + "/" + framework.GenericNameRegex("name") + "/check$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "plugin-check"},
			Fields:       fields,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: &framework.PathOperation{
					Callback: b.pathPluginCheck, Summary: pathCheckHelpSyn,
					Responses: map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
						"plugin_version":     {Type: framework.TypeString, Description: "Version the plugin reported (empty when it reports none)."},
						"container_id":       {Type: framework.TypeString, Description: "ID of the container that ran (now removed)."},
						"image":              {Type: framework.TypeString, Description: "Image reference the container ran."},
						"oci_runtime":        {Type: framework.TypeString, Description: "OCI runtime the container ran with."},
						"create_ms":          {Type: framework.TypeInt, Description: "Milliseconds to create the container."},
						"start_ms":           {Type: framework.TypeInt, Description: "Milliseconds to start it."},
						"handshake_ms":       {Type: framework.TypeInt, Description: "Milliseconds from its start to the end of the go-plugin handshake."},
						"pulled":             {Type: framework.TypeBool, Description: "Whether the image was pulled for this check (pull_policy missing, and the engine lacked it)."},
						"pull_ms":            {Type: framework.TypeInt, Description: "Milliseconds the pull took, pinned and verified; 0 when nothing was pulled."},
						"total_ms":           {Type: framework.TypeInt, Description: "Milliseconds for the whole check, stopping and removal included."},
						"registered_version": {Type: framework.TypeString, Description: "Version the plugin is registered as; a plugin that reports none of its own gets a warning saying so."},
					}}}},
				},
			},
			HelpSynopsis: pathCheckHelpSyn, HelpDescription: pathCheckHelpDesc,
		},
	}
}

// pluginToRun is the plugin the path names and its runtime, as they are now.
func (b *backend) pluginToRun(ctx context.Context, d *framework.FieldData) (pluginID, runtime.Plugin, runtime.Runtime, error) {
	id, err := pluginIDFromPath(d)
	if err != nil {
		return id, runtime.Plugin{}, runtime.Runtime{}, err
	}
	p, rt, err := b.catalog.ToRun(ctx, id)
	return id, p, rt, err
}

func (b *backend) pathPluginRunConfig(ctx context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	_, p, rt, err := b.pluginToRun(ctx, d)
	if err != nil {
		return reqerr.Respond(err)
	}
	engine, err := b.engine(rt)
	if err != nil {
		return nil, err
	}
	options := b.runOptions(ctx, "run-config")
	// The registration's env values may be secrets, which reads never show:
	// neither does this. It says that one is set, not what it is.
	options.RedactEnv = true
	preview, err := runtime.PreviewRun(engine, p, rt, options)
	if errors.Is(err, runtime.ErrStartRefused) || errors.Is(err, runtime.ErrUnknownOCIRuntime) {
		// What the engine cannot run of this registration and runtime.
		return reqerr.Respond(reqerr.BadRequest(err))
	}
	if err != nil {
		return reqerr.Respond(err)
	}
	// Through JSON, so the response carries the engine API's own names.
	encoded, err := json.Marshal(preview.Request)
	if err != nil {
		return nil, err
	}
	var data map[string]interface{}
	if err := json.Unmarshal(encoded, &data); err != nil {
		return nil, err
	}
	data["set_at_start"] = preview.SetAtStart
	return &logical.Response{Data: data}, nil
}

func (b *backend) pathPluginCheck(ctx context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	id, p, rt, err := b.pluginToRun(ctx, d)
	if err != nil {
		return reqerr.Respond(err)
	}
	engine, err := b.engine(rt)
	if err != nil {
		return nil, err
	}
	result, err := runtime.Check(ctx, engine, p, rt, b.runOptions(ctx, "check"))
	if err != nil {
		return reqerr.Respond(reqerr.StartFailure(id.String(), err))
	}
	resp := &logical.Response{Data: map[string]interface{}{
		"plugin_version":     result.PluginVersion,
		"container_id":       result.ID,
		"image":              p.ImageRef(),
		"oci_runtime":        rt.EffectiveOCIRuntime(),
		"pulled":             result.Pulled > 0,
		"pull_ms":            ms(result.Pulled),
		"create_ms":          ms(result.Created),
		"start_ms":           ms(result.Started),
		"handshake_ms":       ms(result.Handshake),
		"total_ms":           ms(result.Total),
		"registered_version": p.Version,
	}}
	if result.PluginVersion == "" {
		// The CLI shows an empty value as n/a, with no word why.
		resp.AddWarning(fmt.Sprintf("the plugin reports no version of its own (it does not implement the SDK's PluginVersion); it is registered as %s", p.Version))
	}
	return resp, nil
}

// ms is a duration in whole milliseconds, as an operator reads it; one
// that took any time at all is at least 1.
func ms(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return max(1, d.Round(time.Millisecond).Milliseconds())
}

// runOptions is what the Vault running this plugin tells the containers it
// starts: its cluster ID and version (informational: empty when Vault has
// none) and whether mlock is on.
func (b *backend) runOptions(ctx context.Context, logName string) runtime.Options {
	sys := b.System()
	clusterID, _ := sys.ClusterID(ctx)
	vaultVersion, _ := sys.VaultVersion(ctx)
	return runtime.Options{
		ClusterID: clusterID, VaultVersion: vaultVersion, MLock: sys.MlockEnabled(),
		Logger: b.Logger().Named(logName),
		Auth: func(registry string) *runtime.RegistryAuth {
			r, err := b.catalog.Registry(ctx, registry)
			if err != nil {
				b.Logger().Warn("reading the credentials of a registry", "registry", registry, "error", err)
			}
			if r == nil {
				return nil
			}
			return r.auth()
		},
	}
}

// startHosted starts a hosted mount's plugin: the host's StartFunc.
func (b *backend) startHosted(ctx context.Context, p runtime.Plugin, rt runtime.Runtime, logName string) (hosting.Plugin, error) {
	engine, err := b.engine(rt)
	if err != nil {
		return nil, err
	}
	settings, err := b.catalog.Settings(ctx)
	if err != nil {
		return nil, err
	}
	options := b.runOptions(ctx, logName)
	options.MaxResponseBytes = int(settings.maxHostedResponse())
	running, err := runtime.Start(ctx, engine, p, rt, options)
	if err != nil {
		// An engine that does not answer (restarting, down) is no fault of
		// the plugin (the runtime says which): the host waits and tries
		// again rather than count it.
		if errors.Is(err, runtime.ErrEngineUnreachable) {
			return nil, err
		}
		return nil, reqerr.StartFailure(p.Type+"/"+p.Name, err)
	}
	return running, nil
}

// hostEngines are the engines as the host asks of them (hosting.Engines).
type hostEngines struct{ b *backend }

var _ hosting.Engines = hostEngines{}

func (e hostEngines) Ping(ctx context.Context, rt runtime.Runtime) error {
	engine, err := e.b.engine(rt)
	if err == nil {
		err = engine.Ping(ctx)
	}
	return err
}

func (e hostEngines) Address(rt runtime.Runtime) string {
	if engine, err := e.b.engine(rt); err == nil {
		return engine.Address()
	}
	return rt.Engine
}

func (e hostEngines) ReapOrphans(ctx context.Context, rt runtime.Runtime, clusterID string) (int, error) {
	engine, err := e.b.engine(rt)
	if err != nil {
		return 0, err
	}
	removed, err := engine.ReapOrphans(ctx, clusterID)
	return len(removed), err
}

// engine is the engine that runs rt's containers.
func (b *backend) engine(rt runtime.Runtime) (runtime.Engine, error) {
	engine, err := b.engines.Get(rt.Engine)
	if err != nil {
		return nil, logical.CodedError(http.StatusBadGateway, err.Error())
	}
	return engine, nil
}
