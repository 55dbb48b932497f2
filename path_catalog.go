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
	pathCatalogHelpSyn  = "List the plugin runtimes in the catalog."
	pathCatalogHelpDesc = `
Lists every plugin runtime, sorted by name: "runtimes" holds each runtime's
settings, as Vault's sys/plugins/runtimes/catalog returns them, "keys" the
names, so that "vault list" prints them, and "key_info" each runtime's
oci_runtime. Needs the sudo capability.
`
	pathRuntimeHelpSyn  = "Register, read, patch or remove a plugin runtime."
	pathRuntimeHelpDesc = `
A plugin runtime says how the containers of the plugins that reference it
are run: the OCI runtime (default runsc, gVisor), the parent cgroup, CPU and
memory limits per container, and whether Docker runs rootless. A read also
lists the plugins that use the runtime; a runtime in use cannot be deleted.
Writing
replaces the whole runtime (fields left out are reset); patching changes only
the fields sent. Reading a missing runtime is a 404; deleting one succeeds.
Needs the sudo capability.
`
)

// runtimeFieldSchemas are the settings of a runtime, as Vault's API names them.
func runtimeFieldSchemas() map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		"oci_runtime": {
			Type:        framework.TypeString,
			Description: `OCI-compliant container runtime to use, by the name the Docker Engine knows it by. Empty means "runsc", gVisor's runtime.`,
		},
		"cgroup_parent": {
			Type:        framework.TypeString,
			Description: "Parent cgroup for each container (a cgroup path such as /vault-plugins/, or a systemd slice), to limit the total resource usage of a group of plugins.",
		},
		"cpu_nanos": {
			Type:        framework.TypeInt64,
			Description: "CPU limit per container in billionths of a CPU; 0 means no limit.",
		},
		"memory_bytes": {
			Type:        framework.TypeInt64,
			Description: "Memory limit per container in bytes: 0 means no limit, otherwise at least 6 MiB (Docker's minimum).",
		},
		"rootless": {
			Type:        framework.TypeBool,
			Description: "Whether the container runtime runs as a non-privileged user (rootless Docker). Must be set if plugin images run as a non-root user.",
		},
	}
}

func runtimeTypeField() *framework.FieldSchema {
	return &framework.FieldSchema{
		Type:        framework.TypeString,
		Description: `Plugin runtime type. Only "container" is supported.`,
	}
}

// runtimeResponseFields describe a runtime as read, listed and returned.
func runtimeResponseFields() map[string]*framework.FieldSchema {
	fields := runtimeFieldSchemas()
	fields["name"] = &framework.FieldSchema{Type: framework.TypeString, Description: "Name of the runtime."}
	fields["type"] = runtimeTypeField()
	fields["oci_runtime"] = &framework.FieldSchema{Type: framework.TypeString, Description: "OCI runtime containers are run with (runsc when none was set)."}
	fields["plugins"] = &framework.FieldSchema{Type: framework.TypeStringSlice, Description: `Plugins that use the runtime, as "type/name", sorted by name.`}
	return fields
}

func listResponseFields() map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		"runtimes": {Type: framework.TypeSlice, Description: "Every runtime's settings, sorted by name."},
		"keys":     {Type: framework.TypeStringSlice, Description: "Runtime names, sorted."},
		"key_info": {Type: framework.TypeMap, Description: "A summary of each runtime by name: its oci_runtime."},
	}
}

func pathCatalog(b *backend) []*framework.Path {
	listResponses := map[int][]framework.Response{
		http.StatusOK: {{Description: "OK", Fields: listResponseFields()}},
	}
	runtimeFields := runtimeFieldSchemas()
	runtimeFields["type"] = runtimeTypeField()
	runtimeFields["name"] = &framework.FieldSchema{
		Type:        framework.TypeString,
		Description: "Name of the runtime: letters, digits and '_', with '-' and '.' only inside; at most 128 characters.",
	}
	noContent := map[int][]framework.Response{http.StatusNoContent: {{Description: "OK"}}}

	return []*framework.Path{
		{
			Pattern: "catalog/?$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: "runtime-catalog",
				OperationSuffix: "runtimes",
			},
			Fields: map[string]*framework.FieldSchema{
				"type": {
					Type:        framework.TypeString,
					Description: `Only list runtimes of this type; "container" is the only one.`,
					Query:       true,
				},
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{
					Callback: b.pathRuntimesList, Summary: "List the plugin runtimes.", Responses: listResponses,
				},
				logical.ReadOperation: &framework.PathOperation{
					Callback: b.pathRuntimesList, Summary: "List the plugin runtimes.", Responses: listResponses,
				},
			},
			HelpSynopsis:    pathCatalogHelpSyn,
			HelpDescription: pathCatalogHelpDesc,
		},
		{
			Pattern: "catalog/" + framework.GenericNameRegex("type") + "/?$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: "runtime-catalog",
				OperationSuffix: "runtimes-of-type",
			},
			Fields: map[string]*framework.FieldSchema{"type": runtimeTypeField()},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{
					Callback: b.pathRuntimesList, Summary: "List the plugin runtimes of one type.", Responses: listResponses,
				},
			},
			HelpSynopsis:    pathCatalogHelpSyn,
			HelpDescription: pathCatalogHelpDesc,
		},
		{
			// The name takes anything so that a bad one gets a 400 saying
			// what a name may contain, not a bare 404.
			Pattern: "catalog/" + framework.GenericNameRegex("type") + "/(?P<name>.+)",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: "runtime-catalog",
				OperationSuffix: "runtime",
			},
			Fields: runtimeFields,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: &framework.PathOperation{
					Callback: b.pathRuntimeWrite, Summary: "Register a plugin runtime, or replace it whole.",
					Responses: noContent,
				},
				logical.PatchOperation: &framework.PathOperation{
					Callback: b.pathRuntimePatch, Summary: "Change only the given settings of a plugin runtime.",
					Responses: noContent,
				},
				logical.ReadOperation: &framework.PathOperation{
					Callback: b.pathRuntimeRead, Summary: "Read a plugin runtime.",
					Responses: map[int][]framework.Response{
						http.StatusOK: {{Description: "OK", Fields: runtimeResponseFields()}},
					},
				},
				logical.DeleteOperation: &framework.PathOperation{
					Callback: b.pathRuntimeDelete, Summary: "Remove a plugin runtime.",
					Responses: noContent,
				},
			},
			HelpSynopsis:    pathRuntimeHelpSyn,
			HelpDescription: pathRuntimeHelpDesc,
		},
	}
}

func (b *backend) pathRuntimesList(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	if t := d.Get("type").(string); t != "" {
		if err := validateRuntimeType(t); err != nil {
			return logical.ErrorResponse(err.Error()), nil
		}
	}
	if err := b.index.ensure(ctx, req.Storage); err != nil {
		return nil, err
	}
	if req.WrapInfo == nil {
		body, err := b.index.runtimeListBody()
		if err != nil {
			return nil, err
		}
		return rawListResponse(req.ID, body), nil
	}
	// A wrapped response must be ordinary data for Vault to store.
	sorted := b.index.sortedRuntimes()
	runtimes := make([]map[string]interface{}, len(sorted))
	keys := make([]string, len(sorted))
	keyInfo := make(map[string]interface{}, len(sorted))
	for i, r := range sorted {
		runtimes[i] = r.toResponseData()
		keys[i] = r.Name
		keyInfo[r.Name] = map[string]interface{}{"oci_runtime": r.effectiveOCIRuntime()}
	}
	resp := logical.ListResponseWithInfo(keys, keyInfo)
	resp.Data["runtimes"] = runtimes
	return wrappable(req, resp), nil
}

// runtimeFromPath validates the type and name captured from the path.
func runtimeFromPath(d *framework.FieldData) (runtimeType, name string, err error) {
	runtimeType, name = d.Get("type").(string), d.Get("name").(string)
	if err := validateRuntimeType(runtimeType); err != nil {
		return "", "", err
	}
	if err := validateName("runtime", name); err != nil {
		return "", "", err
	}
	return runtimeType, name, nil
}

func (b *backend) pathRuntimeRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	_, name, err := runtimeFromPath(d)
	if err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	if err := b.index.ensure(ctx, req.Storage); err != nil {
		return nil, err
	}
	r := b.index.runtime(name)
	if r == nil {
		return nil, nil
	}
	data := r.toResponseData()
	data["plugins"] = b.index.pluginsUsing(name)
	return &logical.Response{Data: data}, nil
}

func (b *backend) pathRuntimeWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	runtimeType, name, err := runtimeFromPath(d)
	if err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	r := &runtimeEntry{Name: name, Type: runtimeType}
	if err := applyRuntimeFields(r, d); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	return b.storeRuntime(ctx, req.Storage, name, func(*runtimeEntry) (*runtimeEntry, error) { return r, nil })
}

func (b *backend) pathRuntimePatch(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	_, name, err := runtimeFromPath(d)
	if err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	return b.storeRuntime(ctx, req.Storage, name, func(existing *runtimeEntry) (*runtimeEntry, error) {
		if existing == nil {
			return nil, logical.CodedError(http.StatusNotFound, "no runtime named "+name+" to patch")
		}
		patched := *existing
		return &patched, applyRuntimeFields(&patched, d)
	})
}

// runtimeSettings are the fields of a runtime a request may set.
var runtimeSettings = []string{"oci_runtime", "cgroup_parent", "cpu_nanos", "memory_bytes", "rootless"}

// applyRuntimeFields copies the settings sent in the request onto r.
func applyRuntimeFields(r *runtimeEntry, d *framework.FieldData) error {
	return eachSentField(d, runtimeSettings, func(field string, v interface{}) {
		switch field {
		case "oci_runtime":
			r.OCIRuntime, _ = v.(string)
		case "cgroup_parent":
			r.CgroupParent, _ = v.(string)
		case "cpu_nanos":
			r.CPUNanos, _ = v.(int64)
		case "memory_bytes":
			r.MemoryBytes, _ = v.(int64)
		case "rootless":
			r.Rootless, _ = v.(bool)
		}
	})
}

// storeRuntime validates and stores the runtime that build derives from the
// current one (nil when there is none), holding the name's lock throughout so
// no other write to the name comes between.
func (b *backend) storeRuntime(ctx context.Context, s logical.Storage, name string,
	build func(existing *runtimeEntry) (*runtimeEntry, error),
) (*logical.Response, error) {
	lock := locksutil.LockForKey(b.runtimeLocks, name)
	lock.Lock()
	defer lock.Unlock()

	if err := b.index.ensure(ctx, s); err != nil {
		return nil, err
	}
	r, err := build(b.index.runtime(name))
	if err != nil {
		return buildFailure(err)
	}
	if err := r.validate(); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	if err := putRuntime(ctx, s, r); err != nil {
		return nil, err
	}
	b.index.setRuntime(r)

	if warnings := r.warnings(); len(warnings) > 0 {
		return &logical.Response{Warnings: warnings}, nil
	}
	return nil, nil
}

func (b *backend) pathRuntimeDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	runtimeType, name, err := runtimeFromPath(d)
	if err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	lock := locksutil.LockForKey(b.runtimeLocks, name)
	lock.Lock()
	defer lock.Unlock()

	if err := b.index.ensure(ctx, req.Storage); err != nil {
		return nil, err
	}
	if b.index.runtime(name) == nil {
		return nil, nil // deleting what is not there succeeds, as DELETE should
	}
	// Plugin registrations hold this runtime's lock too, so the users seen
	// here are all there are until the runtime is gone.
	if users := b.index.pluginsUsing(name); len(users) > 0 {
		return logical.ErrorResponse(fmt.Sprintf("unable to delete %q runtime. Registered plugins=%v are referencing it.", name, users)), nil
	}
	if err := deleteRuntime(ctx, req.Storage, runtimeType, name); err != nil {
		return nil, err
	}
	b.index.removeRuntime(name)
	return nil, nil
}
