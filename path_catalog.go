package runtimecatalog

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/reqerr"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
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
		"network": {
			Type:        framework.TypeBool,
			Description: "Whether the containers get the engine's default network, for plugins that reach outside services. Off by default: loopback only.",
		},
		"engine": {
			Type: framework.TypeString,
			Description: "The engine that runs the containers: a unix:// socket speaking the Docker Engine API, such as a Podman service " +
				"(unix:///run/podman/podman.sock), or a Kubernetes cluster's namespace, kubernetes://NAMESPACE (in-cluster credentials) or " +
				"kubernetes://NAMESPACE/abs/path/to/kubeconfig, where each plugin runs as a pod. Empty means the Docker Engine of the " +
				"plugin's environment (DOCKER_HOST, or /var/run/docker.sock).",
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
	fields["engine_runs_oci_runtime"] = &framework.FieldSchema{Type: framework.TypeBool,
		Description: "With check_engine: whether the engine runs the containers under oci_runtime (a Podman service runs only its default)."}
	fields["engine_oci_runtimes"] = &framework.FieldSchema{Type: framework.TypeStringSlice,
		Description: "With check_engine: the OCI runtimes the engine runs containers under."}
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
	runtimeFields["check_engine"] = &framework.FieldSchema{
		Type: framework.TypeBool,
		Description: "On a read: also ask the runtime's engine whether it runs containers under the runtime's oci_runtime " +
			"(engine_runs_oci_runtime) and which OCI runtimes it has (engine_oci_runtimes).",
		Query: true,
	}
	noContent := map[int][]framework.Response{http.StatusNoContent: {{Description: "OK"}}}

	return []*framework.Path{
		{
			Pattern: "catalog/?$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "runtimes",
			},
			Fields: pageFields(map[string]*framework.FieldSchema{
				"type": {
					Type:        framework.TypeString,
					Description: `Only list runtimes of this type; "container" is the only one.`,
					Query:       true,
				},
			}),
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
				OperationPrefix: operationPrefix,
				OperationSuffix: "runtimes-of-type",
			},
			Fields: pageFields(map[string]*framework.FieldSchema{"type": runtimeTypeField()}),
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
				OperationPrefix: operationPrefix,
				OperationSuffix: "runtime",
			},
			Fields:         runtimeFields,
			ExistenceCheck: b.runtimeExists,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.CreateOperation: &framework.PathOperation{
					Callback: b.pathRuntimeWrite, Summary: "Register a plugin runtime.",
					Responses: noContent,
				},
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
			return reqerr.Respond(err)
		}
	}
	pg, err := pageOf(d)
	if err != nil {
		return reqerr.Respond(err)
	}
	sorted, generation, err := b.catalog.Runtimes(ctx)
	if err != nil {
		return nil, err
	}
	if pg.paged {
		from, to := pg.bounds(len(sorted), func(i int) string { return sorted[i].Name })
		sorted = sorted[from:to]
	}
	// Ordinary data when wrapped (Vault stores it in the wrapping token) or
	// when fields were ignored (a raw body would drop the framework's warning).
	if req.WrapInfo == nil && len(unknownFields(d)) == 0 {
		gzipped, err := b.listsGzipped(ctx, req)
		if err != nil {
			return nil, err
		}
		encode := func() ([]byte, error) { return encodeRuntimeList(sorted) }
		var body *listBody
		if pg.paged { // a page is encoded for its request; the whole list once per change
			var rest []byte
			if rest, err = encode(); err == nil {
				body, err = newListBody(rest, gzipped)
			}
		} else {
			body, err = b.runtimeList.get(generation, encode, gzipped)
		}
		if err != nil {
			return nil, err
		}
		return body.response(req.ID, gzipped)
	}
	// A wrapped response must be ordinary data for Vault to store.
	runtimes := make([]map[string]interface{}, len(sorted))
	keys := make([]string, len(sorted))
	keyInfo := make(map[string]interface{}, len(sorted))
	for i, r := range sorted {
		summary := r.summary()
		runtimes[i], keys[i], keyInfo[r.Name] = r.toResponseData(), r.Name, fieldData(&summary)
	}
	resp := listResponse(keys, keyInfo)
	resp.Data["runtimes"] = runtimes
	return wrappable(req, resp)
}

// runtimeName validates the type and name captured from the path.
func runtimeName(d *framework.FieldData) (string, error) {
	if err := validateRuntimeType(d.Get("type").(string)); err != nil {
		return "", err
	}
	name := d.Get("name").(string)
	return name, validateName("runtime", name)
}

// runtimeExists tells Vault whether a write creates or updates, so that a
// policy can grant one without the other.
func (b *backend) runtimeExists(ctx context.Context, _ *logical.Request, d *framework.FieldData) (bool, error) {
	name, err := runtimeName(d)
	if err != nil {
		return false, nil // the write itself refuses the name
	}
	r, err := b.catalog.Runtime(ctx, name)
	return r != nil, err
}

func (b *backend) pathRuntimeRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, err := runtimeName(d)
	if err != nil {
		return reqerr.Respond(err)
	}
	r, err := b.catalog.Runtime(ctx, name)
	if err != nil || r == nil {
		return nil, err
	}
	users, err := b.catalog.PluginsUsing(ctx, name)
	if err != nil {
		return nil, err
	}
	data := r.toResponseData()
	plugins := make([]string, len(users))
	for i, id := range users {
		plugins[i] = id.String()
	}
	data["plugins"] = plugins
	if d.Get("check_engine").(bool) {
		facts, err := b.askEngine(ctx, r.Runtime, true) // what it says now
		if err != nil {
			// The engine is the question: its silence is the answer.
			return &logical.Response{Data: data, Warnings: []string{err.Error()}}, nil
		}
		data["engine_runs_oci_runtime"] = facts.Runs(r.EffectiveOCIRuntime())
		data["engine_oci_runtimes"] = facts.Usable() // an engine that runs only its default really uses that one
	}
	if req.WrapInfo != nil || len(unknownFields(d)) > 0 {
		// Ordinary data: what Vault wraps, and what carries the framework's
		// warning about unknown fields.
		return &logical.Response{Data: data}, nil
	}
	return rawDataResponse(req.ID, data, nil)
}

func (b *backend) pathRuntimeWrite(ctx context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, err := runtimeName(d)
	if err != nil {
		return reqerr.Respond(err)
	}
	return b.writeRuntime(ctx, name, func(*runtimeEntry) (*runtimeEntry, error) {
		r := newRuntimeEntry(name)
		return r, applySentFields(r, d, runtimeFieldSchemas())
	})
}

func (b *backend) pathRuntimePatch(ctx context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, err := runtimeName(d)
	if err != nil {
		return reqerr.Respond(err)
	}
	return b.writeRuntime(ctx, name, func(existing *runtimeEntry) (*runtimeEntry, error) {
		if existing == nil {
			return nil, logical.CodedError(http.StatusNotFound, "no runtime named "+name+" to patch")
		}
		patched := *existing
		return &patched, applySentFields(&patched, d, runtimeFieldSchemas())
	})
}

func (b *backend) writeRuntime(ctx context.Context, name string, build func(*runtimeEntry) (*runtimeEntry, error)) (*logical.Response, error) {
	r, err := b.catalog.WriteRuntime(ctx, name, build)
	if err != nil {
		return reqerr.Respond(err)
	}
	warnings := r.warnings()
	// An engine may be set up after the catalog: what it says is a
	// warning, and the runtime is stored either way.
	if facts, err := b.askEngine(ctx, r.Runtime, false); errors.Is(err, runtime.ErrFactsWithheld) {
		warnings = append(warnings, err.Error()+"; the runtime is stored, and its plugins start if the engine runs "+r.EffectiveOCIRuntime())
	} else if err != nil {
		warnings = append(warnings, err.Error()+"; the runtime is stored, and its plugins cannot start until the engine answers")
	} else if oci := r.EffectiveOCIRuntime(); !facts.Runs(oci) {
		warnings = append(warnings, facts.Refusal(oci)+"; the runtime is stored, and its plugins will not start there until this changes")
	}
	if len(warnings) > 0 {
		return &logical.Response{Warnings: warnings}, nil
	}
	return nil, nil
}

// engineAskTimeout bounds how long a write or read waits for an engine's
// answer about its OCI runtimes.
const engineAskTimeout = 3 * time.Second

// askEngine asks rt's engine what it runs: now when fresh, else an answer
// up to runtime.FactsTTL old.
func (b *backend) askEngine(ctx context.Context, rt runtime.Runtime, fresh bool) (runtime.EngineFacts, error) {
	ctx, cancel := context.WithTimeout(ctx, engineAskTimeout)
	defer cancel()
	if fresh {
		return b.engines.FreshFacts(ctx, rt.Engine)
	}
	return b.engines.Facts(ctx, rt.Engine)
}

func (b *backend) pathRuntimeDelete(ctx context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, err := runtimeName(d)
	if err == nil {
		err = b.catalog.DeleteRuntime(ctx, name)
	}
	if err != nil {
		return reqerr.Respond(err)
	}
	return nil, nil
}
