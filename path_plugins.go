package runtimecatalog

import (
	"context"
	"fmt"
	"net/http"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"
)

const (
	pathPluginsHelpSyn  = "List the container plugins in the catalog."
	pathPluginsHelpDesc = `
Lists the registered container plugins, sorted: "plugins" holds each one's
settings, "keys" and "key_info" let "vault list" print them ("type/name" at
plugins/catalog, names at plugins/catalog/TYPE). Needs the sudo capability.
`
	pathPluginHelpSyn  = "Register, read, patch or remove a container plugin."
	pathPluginHelpDesc = `
A container plugin is an OCI image run with a plugin runtime, as Vault's
sys/plugins/catalog registers it: oci_image (no tag), version (the tag is the
version without its leading "v"), sha256 (the image ID), command, args, env
and runtime. A runtime must exist to be referenced, and a runtime cannot be
deleted while a plugin references it. A read returns the names of the env
variables, never their values. Writing replaces the whole plugin; patching
changes only the fields sent. Needs the sudo capability.
`
)

func pluginFieldSchemas() map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		"oci_image": {
			Type:        framework.TypeString,
			Description: `OCI image to run, without a tag (the tag comes from version). Must be present on the Docker Engine: it is never pulled.`,
		},
		"version": {
			Type:        framework.TypeString,
			Description: `Semantic version of the plugin; the image tag is the version without its leading "v".`,
		},
		"sha256": {
			Type:        framework.TypeString,
			Description: `SHA-256 image ID (64 hex characters, "sha256:" prefix allowed). When set, the container runs exactly this image.`,
		},
		"command": {
			Type:        framework.TypeString,
			Description: "Command to run in the container (its entrypoint); empty keeps the image's own.",
		},
		"args": {
			Type:        framework.TypeStringSlice,
			Description: "Arguments for the command (the container's cmd).",
		},
		"env": {
			Type:        framework.TypeStringSlice,
			Description: "Environment variables for the plugin, each KEY=VALUE. Reads return only the keys.",
		},
		"runtime": {
			Type:        framework.TypeString,
			Description: "Name of a registered container runtime; empty runs with the default settings and runsc.",
		},
	}
}

func pluginTypeField() *framework.FieldSchema {
	return &framework.FieldSchema{
		Type:        framework.TypeString,
		Description: "Plugin type: auth, database or secret.",
	}
}

func pluginResponseFields() map[string]*framework.FieldSchema {
	fields := pluginFieldSchemas()
	fields["name"] = &framework.FieldSchema{Type: framework.TypeString, Description: "Name of the plugin."}
	fields["type"] = pluginTypeField()
	fields["env"] = &framework.FieldSchema{Type: framework.TypeStringSlice, Description: "Names of the plugin's environment variables."}
	return fields
}

func pathPlugins(b *backend) []*framework.Path {
	listResponses := map[int][]framework.Response{http.StatusOK: {{
		Description: "OK",
		Fields: map[string]*framework.FieldSchema{
			"plugins":  {Type: framework.TypeSlice, Description: "Every plugin's settings, sorted by type and name."},
			"keys":     {Type: framework.TypeStringSlice, Description: "Plugins, sorted."},
			"key_info": {Type: framework.TypeMap, Description: "Each plugin's settings, by key."},
		},
	}}}
	noContent := map[int][]framework.Response{http.StatusNoContent: {{Description: "OK"}}}
	fields := pluginFieldSchemas()
	fields["type"] = pluginTypeField()
	fields["name"] = &framework.FieldSchema{
		Type:        framework.TypeString,
		Description: "Name of the plugin: letters, digits and '_', with '-' and '.' only inside; at most 128 characters.",
	}

	return []*framework.Path{
		{
			Pattern:      "plugins/catalog/?$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "runtime-catalog", OperationSuffix: "plugins"},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{Callback: b.pathPluginsList, Summary: "List the container plugins.", Responses: listResponses},
				logical.ReadOperation: &framework.PathOperation{Callback: b.pathPluginsList, Summary: "List the container plugins.", Responses: listResponses},
			},
			HelpSynopsis:    pathPluginsHelpSyn,
			HelpDescription: pathPluginsHelpDesc,
		},
		{
			Pattern:      "plugins/catalog/" + framework.GenericNameRegex("type") + "/?$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "runtime-catalog", OperationSuffix: "plugins-of-type"},
			Fields:       map[string]*framework.FieldSchema{"type": pluginTypeField()},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{Callback: b.pathPluginsList, Summary: "List the container plugins of one type.", Responses: listResponses},
			},
			HelpSynopsis:    pathPluginsHelpSyn,
			HelpDescription: pathPluginsHelpDesc,
		},
		{
			Pattern:      "plugins/catalog/" + framework.GenericNameRegex("type") + "/(?P<name>.+)",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "runtime-catalog", OperationSuffix: "plugin"},
			Fields:       fields,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: &framework.PathOperation{Callback: b.pathPluginWrite, Summary: "Register a container plugin, or replace it whole.", Responses: noContent},
				logical.PatchOperation:  &framework.PathOperation{Callback: b.pathPluginPatch, Summary: "Change only the given settings of a container plugin.", Responses: noContent},
				logical.ReadOperation: &framework.PathOperation{Callback: b.pathPluginRead, Summary: "Read a container plugin.", Responses: map[int][]framework.Response{
					http.StatusOK: {{Description: "OK", Fields: pluginResponseFields()}},
				}},
				logical.DeleteOperation: &framework.PathOperation{Callback: b.pathPluginDelete, Summary: "Remove a container plugin.", Responses: noContent},
			},
			HelpSynopsis:    pathPluginHelpSyn,
			HelpDescription: pathPluginHelpDesc,
		},
	}
}

func (b *backend) pathPluginsList(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	onlyType := ""
	if raw, ok := d.GetOk("type"); ok {
		onlyType = raw.(string)
		if err := validatePluginType(onlyType); err != nil {
			return logical.ErrorResponse(err.Error()), nil
		}
	}
	if err := b.index.ensure(ctx, req.Storage); err != nil {
		return nil, err
	}
	var plugins []map[string]interface{}
	var keys []string
	keyInfo := map[string]interface{}{}
	for _, p := range b.index.pluginsSorted() {
		if onlyType != "" && p.Type != onlyType {
			continue
		}
		key := p.id()
		if onlyType != "" {
			key = p.Name
		}
		data := p.toResponseData()
		plugins, keys, keyInfo[key] = append(plugins, data), append(keys, key), data
	}
	resp := logical.ListResponseWithInfo(keys, keyInfo)
	if plugins == nil {
		plugins = []map[string]interface{}{}
	}
	resp.Data["plugins"] = plugins
	return wrappable(req, resp), nil
}

// pluginFromPath validates the type and name captured from the path.
func pluginFromPath(d *framework.FieldData) (pluginType, name string, err error) {
	pluginType, name = d.Get("type").(string), d.Get("name").(string)
	if err := validatePluginType(pluginType); err != nil {
		return "", "", err
	}
	if err := validateName("plugin", name); err != nil {
		return "", "", err
	}
	return pluginType, name, nil
}

func (b *backend) pathPluginRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	pluginType, name, err := pluginFromPath(d)
	if err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	if err := b.index.ensure(ctx, req.Storage); err != nil {
		return nil, err
	}
	p := b.index.plugin(pluginType + "/" + name)
	if p == nil {
		return nil, nil
	}
	return &logical.Response{Data: p.toResponseData()}, nil
}

func (b *backend) pathPluginWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	pluginType, name, err := pluginFromPath(d)
	if err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	p := &pluginEntry{Name: name, Type: pluginType}
	if err := applyPluginFields(p, d); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	return b.storePlugin(ctx, req.Storage, p.id(), func(*pluginEntry) (*pluginEntry, error) { return p, nil })
}

func (b *backend) pathPluginPatch(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	pluginType, name, err := pluginFromPath(d)
	if err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	id := pluginType + "/" + name
	return b.storePlugin(ctx, req.Storage, id, func(existing *pluginEntry) (*pluginEntry, error) {
		if existing == nil {
			return nil, logical.CodedError(http.StatusNotFound, "no plugin "+id+" to patch")
		}
		patched := *existing
		return &patched, applyPluginFields(&patched, d)
	})
}

// pluginSettings are the fields of a plugin a request may set.
var pluginSettings = []string{"oci_image", "version", "sha256", "command", "args", "env", "runtime"}

// applyPluginFields copies the fields sent in the request onto p.
func applyPluginFields(p *pluginEntry, d *framework.FieldData) error {
	return eachSentField(d, pluginSettings, func(field string, v interface{}) {
		switch field {
		case "oci_image":
			p.OCIImage, _ = v.(string)
		case "version":
			p.Version, _ = v.(string)
		case "sha256":
			p.SHA256, _ = v.(string)
		case "command":
			p.Command, _ = v.(string)
		case "args":
			p.Args, _ = v.([]string)
		case "env":
			p.Env, _ = v.([]string)
		case "runtime":
			p.Runtime, _ = v.(string)
		}
	})
}

// storePlugin validates and stores the plugin that build derives from the
// current one (nil when there is none). It holds the plugin's lock, and the
// lock of the runtime it references while checking that the runtime exists
// and storing: a runtime deletion takes that lock too, so no plugin can come
// to reference a runtime that is being deleted. Locks are always taken plugin
// first, then runtime; runtime writers never take a plugin lock.
func (b *backend) storePlugin(ctx context.Context, s logical.Storage, id string,
	build func(existing *pluginEntry) (*pluginEntry, error),
) (*logical.Response, error) {
	lock := locksutil.LockForKey(b.pluginLocks, id)
	lock.Lock()
	defer lock.Unlock()

	if err := b.index.ensure(ctx, s); err != nil {
		return nil, err
	}
	p, err := build(b.index.plugin(id))
	if err != nil {
		return buildFailure(err)
	}
	if err := p.validate(); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	if p.Runtime != "" {
		runtimeLock := locksutil.LockForKey(b.runtimeLocks, p.Runtime)
		runtimeLock.Lock()
		defer runtimeLock.Unlock()
		if b.index.runtime(p.Runtime) == nil {
			return logical.ErrorResponse(fmt.Sprintf("plugin runtime %q does not exist", p.Runtime)), nil
		}
	}
	if err := putPlugin(ctx, s, p); err != nil {
		return nil, err
	}
	b.index.setPlugin(p)
	return nil, nil
}

func (b *backend) pathPluginDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	pluginType, name, err := pluginFromPath(d)
	if err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	id := pluginType + "/" + name
	lock := locksutil.LockForKey(b.pluginLocks, id)
	lock.Lock()
	defer lock.Unlock()

	if err := b.index.ensure(ctx, req.Storage); err != nil {
		return nil, err
	}
	if b.index.plugin(id) == nil {
		return nil, nil
	}
	if err := deletePlugin(ctx, req.Storage, pluginType, name); err != nil {
		return nil, err
	}
	b.index.removePlugin(id)
	return nil, nil
}
