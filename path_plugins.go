package runtimecatalog

import (
	"context"
	"net/http"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/reqerr"
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
		"pull_policy": {
			Type: framework.TypeString,
			Description: `Whether a start may pull the image: "never" (the default, as Vault: the image must be on the engine) or ` +
				`"missing" (pulled when the engine lacks the image ID, by image_digest when set, and checked against sha256, which it needs).`,
		},
		"image_digest": {
			Type:        framework.TypeString,
			Description: `The registry's manifest digest ("sha256:…") a pull is pinned to: the image is pulled as oci_image@image_digest.`,
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
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "plugins"},
			Fields: pageFields(map[string]*framework.FieldSchema{"type": {
				Type: framework.TypeString, Query: true,
				Description: "Only list plugins of this type (auth, database or secret), as plugins/catalog/TYPE does.",
			}}),
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{Callback: b.pathPluginsList, Summary: "List the container plugins.", Responses: listResponses},
				logical.ReadOperation: &framework.PathOperation{Callback: b.pathPluginsList, Summary: "List the container plugins.", Responses: listResponses},
			},
			HelpSynopsis:    pathPluginsHelpSyn,
			HelpDescription: pathPluginsHelpDesc,
		},
		{
			Pattern:      "plugins/catalog/" + framework.GenericNameRegex("type") + "/?$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "plugins-of-type"},
			Fields:       pageFields(map[string]*framework.FieldSchema{"type": pluginTypeField()}),
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{Callback: b.pathPluginsList, Summary: "List the container plugins of one type.", Responses: listResponses},
			},
			HelpSynopsis:    pathPluginsHelpSyn,
			HelpDescription: pathPluginsHelpDesc,
		},
		{
			Pattern:        "plugins/catalog/" + framework.GenericNameRegex("type") + "/(?P<name>.+)",
			DisplayAttrs:   &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "plugin"},
			Fields:         fields,
			ExistenceCheck: b.pluginExists,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.CreateOperation: &framework.PathOperation{Callback: b.pathPluginWrite, Summary: "Register a container plugin.", Responses: noContent},
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
			return reqerr.Respond(err)
		}
	}
	pg, err := pageOf(d)
	if err != nil {
		return reqerr.Respond(err)
	}
	all, err := b.catalog.Plugins(ctx)
	if err != nil {
		return nil, err
	}
	// The keys: "type/name", or the names of one type; sorted either way.
	var selected []*pluginEntry
	var allKeys []string
	for _, p := range all {
		if onlyType != "" && p.Type != onlyType {
			continue
		}
		key := p.id().String()
		if onlyType != "" {
			key = p.Name
		}
		selected, allKeys = append(selected, p), append(allKeys, key)
	}
	from, to := pg.bounds(len(allKeys), func(i int) string { return allKeys[i] })
	plugins := []map[string]interface{}{}
	keys := []string{} // an empty list has the shape of a full one
	keyInfo := map[string]interface{}{}
	for i := from; i < to; i++ {
		data := selected[i].toResponseData()
		plugins, keys, keyInfo[allKeys[i]] = append(plugins, data), append(keys, allKeys[i]), data
	}
	resp := listResponse(keys, keyInfo)
	resp.Data["plugins"] = plugins
	return b.listAnswer(ctx, req, resp)
}

// pluginIDFromPath validates the type and name captured from the path.
func pluginIDFromPath(d *framework.FieldData) (pluginID, error) {
	id := pluginID{Type: d.Get("type").(string), Name: d.Get("name").(string)}
	if err := validatePluginType(id.Type); err != nil {
		return pluginID{}, err
	}
	return id, validateName("plugin", id.Name)
}

// pluginExists tells Vault whether a write creates or updates.
func (b *backend) pluginExists(ctx context.Context, _ *logical.Request, d *framework.FieldData) (bool, error) {
	id, err := pluginIDFromPath(d)
	if err != nil {
		return false, nil // the write itself refuses the name
	}
	p, err := b.catalog.Plugin(ctx, id)
	return p != nil, err
}

func (b *backend) pathPluginRead(ctx context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	id, err := pluginIDFromPath(d)
	if err != nil {
		return reqerr.Respond(err)
	}
	p, err := b.catalog.Plugin(ctx, id)
	if err != nil || p == nil {
		return nil, err
	}
	return &logical.Response{Data: p.toResponseData()}, nil
}

func (b *backend) pathPluginWrite(ctx context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	id, err := pluginIDFromPath(d)
	if err == nil {
		_, err = b.catalog.WritePlugin(ctx, id, func(*pluginEntry) (*pluginEntry, error) {
			p := newPluginEntry(id)
			return p, applySentFields(p, d, pluginFieldSchemas())
		})
	}
	if err != nil {
		return reqerr.Respond(err)
	}
	return nil, nil
}

func (b *backend) pathPluginPatch(ctx context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	id, err := pluginIDFromPath(d)
	if err == nil {
		_, err = b.catalog.WritePlugin(ctx, id, func(existing *pluginEntry) (*pluginEntry, error) {
			if existing == nil {
				return nil, logical.CodedError(http.StatusNotFound, "no plugin "+id.String()+" to patch")
			}
			patched := *existing
			return &patched, applySentFields(&patched, d, pluginFieldSchemas())
		})
	}
	if err != nil {
		return reqerr.Respond(err)
	}
	return nil, nil
}

func (b *backend) pathPluginDelete(ctx context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	id, err := pluginIDFromPath(d)
	if err == nil {
		err = b.catalog.DeletePlugin(ctx, id)
	}
	if err != nil {
		return reqerr.Respond(err)
	}
	return nil, nil
}
