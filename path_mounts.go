package runtimecatalog

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/hosting"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/reqerr"
)

const (
	pathMountsHelpSyn  = "List the hosted mounts."
	pathMountsHelpDesc = `
Lists the hosted mounts, whose settings are at hosted/NAME and whose data is
served under mounts/NAME/: "keys" are their names, "key_info" their plugin and description. Needs the
sudo capability.
`
	pathMountHelpSyn  = "Host a registered container plugin of this mount's kind under mounts/NAME/."
	pathMountHelpDesc = `
The settings of a hosted mount, as sys/mounts/NAME is for a Vault mount.
Mounts a registered container plugin under mounts/NAME/: a secret plugin
on a secrets mount of this plugin, an auth plugin on an auth mount (whose
plugins' logins Vault turns into tokens). Every
request there is served by the plugin in its container, run with its
runtime's limits, with its data in storage of its own. Writing starts the
plugin (Setup and Initialize) before answering: a plugin that cannot start
is refused with the reason and nothing is stored. Mounts of the same
multiplexed plugin and runtime share one container. A read returns the
settings and the state: running, pending_reload (the sudo or unauthenticated
paths its plugin declares differ from those Vault enforces for the name, more
or fewer: reload this mount with vault write
sys/plugins/reload/backend), stopped (the next request starts it) or failed (it
kept failing: fix the cause, then plugins/reload). Deleting stops it and
removes its data; with leases outstanding it needs force=true. Needs sudo;
the data under mounts/NAME/ needs only what the token's ACL policy grants
there, from the first request.
`
	pathReloadHelpSyn  = "Restart hosted mounts with their plugin and runtime as registered now."
	pathReloadHelpDesc = `
Restarts the named hosted mounts ("mounts"), or every mount of one plugin
("plugin"), with the plugin and runtime as they are registered now, as
Vault's sys/plugins/reload does; a failed mount is retried. A registration
edited since a mount started applies only then. Needs sudo.
`
)

func mountFieldSchemas() map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		"plugin": {
			Type:        framework.TypeString,
			Description: "Name of the registered container plugin to host: plugins/catalog/secret/NAME on a secrets mount, plugins/catalog/auth/NAME on an auth mount.",
		},
		"options": {
			Type:        framework.TypeKVPairs,
			Description: "Mount options handed to the plugin as its mount config, as vault secrets enable -options (or vault auth enable -options) does (kv: version=2).",
		},
		"description": {
			Type:        framework.TypeString,
			Description: "A description of the mount.",
		},
	}
}

func mountResponseFields() map[string]*framework.FieldSchema {
	fields := mountFieldSchemas()
	for name, schema := range map[string]*framework.FieldSchema{
		"name":          {Type: framework.TypeString, Description: "Name of the hosted mount."},
		"uuid":          {Type: framework.TypeString, Description: "The hosted backend's UUID; it names the mount's storage."},
		"special_paths": {Type: framework.TypeMap, Description: "The plugin's own root (sudo) and unauthenticated paths, under mounts/NAME/."},
		"state":         {Type: framework.TypeString, Description: "running, pending_reload, stopped or failed."},
		"reason":        {Type: framework.TypeString, Description: "Why the mount is stopped or failed."},
		"container_id":  {Type: framework.TypeString, Description: "The container serving the mount."},
		"oci_runtime":   {Type: framework.TypeString, Description: "The OCI runtime the container runs with."},
		"started_at":    {Type: framework.TypeString, Description: "When the mount last started (RFC 3339), empty if never."},
		"restarts":      {Type: framework.TypeInt, Description: "How often the mount was restarted because its plugin was gone."},
		"outdated":      {Type: framework.TypeBool, Description: "The plugin or runtime was edited since the mount started: plugins/reload applies it."},
		"shared_with":   {Type: framework.TypeStringSlice, Description: "The other hosted mounts served by the same container."},
		"health": {Type: framework.TypeMap, Description: "On a read: the running container's memory_bytes, memory_limit_bytes, cpu_seconds and pids, " +
			"oom_kills (the kernel's, over the mount's containers), the last exits newest first (time, exit_code, reason, signal, output), " +
			"restart_causes, failed_starts; figures the engine does not give are named in unavailable."},
	} {
		fields[name] = schema
	}
	return fields
}

func pathMounts(b *backend) []*framework.Path {
	fields := mountFieldSchemas()
	fields["name"] = &framework.FieldSchema{Type: framework.TypeString, Description: "Name of the hosted mount: letters, digits and '_', with '-' and '.' only inside."}
	fields["force"] = &framework.FieldSchema{Type: framework.TypeBool, Description: "Delete even with leases outstanding (Vault will fail to revoke them).", Query: true}
	read := map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: mountResponseFields()}}}
	return []*framework.Path{
		{
			Pattern:      "hosted/?$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "hosted-mounts"},
			Fields:       pageFields(nil),
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{Callback: b.pathMountsList, Summary: pathMountsHelpSyn,
					Responses: map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
						"keys":     {Type: framework.TypeStringSlice, Description: "Hosted mount names, sorted."},
						"key_info": {Type: framework.TypeMap, Description: "Each mount's plugin and description."},
					}}}}},
			},
			HelpSynopsis: pathMountsHelpSyn, HelpDescription: pathMountsHelpDesc,
		},
		{
			Pattern:        "hosted/(?P<name>[^/]+)$",
			DisplayAttrs:   &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "hosted-mount"},
			Fields:         fields,
			ExistenceCheck: b.mountExists,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.CreateOperation: &framework.PathOperation{Callback: b.pathMountWrite, Summary: "Host a plugin.", Responses: read},
				logical.UpdateOperation: &framework.PathOperation{Callback: b.pathMountWrite, Summary: "Host a plugin, or change a hosted mount.", Responses: read},
				logical.ReadOperation:   &framework.PathOperation{Callback: b.pathMountRead, Summary: "Read a hosted mount's settings and state.", Responses: read},
				logical.DeleteOperation: &framework.PathOperation{Callback: b.pathMountDelete, Summary: "Stop a hosted mount and remove its data.",
					Responses: map[int][]framework.Response{
						http.StatusNoContent: {{Description: "OK"}},
						http.StatusOK:        {{Description: "OK, on an auth mount, with a warning on how to revoke the tokens its logins created."}},
					}},
			},
			HelpSynopsis: pathMountHelpSyn, HelpDescription: pathMountHelpDesc,
		},
		{
			Pattern:      "plugins/reload$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "reload-hosted-mounts"},
			Fields: map[string]*framework.FieldSchema{
				"plugin": {Type: framework.TypeString, Description: "Restart every hosted mount of this plugin."},
				"mounts": {Type: framework.TypeCommaStringSlice, Description: "Restart these hosted mounts."},
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: &framework.PathOperation{Callback: b.pathReload, Summary: pathReloadHelpSyn,
					Responses: map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
						"reloaded": {Type: framework.TypeStringSlice, Description: "The mounts restarted."},
						"failed":   {Type: framework.TypeMap, Description: "The mounts that did not start, with the reason."},
					}}}}},
			},
			HelpSynopsis: pathReloadHelpSyn, HelpDescription: pathReloadHelpDesc,
		},
	}
}

func (b *backend) pathMountsList(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	pg, err := pageOf(d)
	if err != nil {
		return reqerr.Respond(err)
	}
	mounts, err := b.catalog.Mounts(ctx)
	if err != nil {
		return nil, err
	}
	from, to := pg.bounds(len(mounts), func(i int) string { return mounts[i].Name })
	mounts = mounts[from:to]
	keys := make([]string, len(mounts)) // empty, not absent: an empty list has the shape of a full one
	info := make(map[string]interface{}, len(mounts))
	for i, m := range mounts {
		keys[i], info[m.Name] = m.Name, m.summary()
	}
	return b.listAnswer(ctx, req, listResponse(keys, info))
}

func mountName(d *framework.FieldData) (string, error) {
	name := d.Get("name").(string)
	return name, validateName("mount", name)
}

func (b *backend) mountExists(ctx context.Context, _ *logical.Request, d *framework.FieldData) (bool, error) {
	name, err := mountName(d)
	if err != nil {
		return false, nil // the write itself refuses the name
	}
	m, err := b.catalog.Mount(ctx, name)
	return m != nil, err
}

func (b *backend) pathMountWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, err := mountName(d)
	if err != nil {
		return reqerr.Respond(err)
	}
	var changes []string
	stillStarting := false
	m, err := b.catalog.WriteMount(ctx, name, func(existing *mountEntry) (*mountEntry, error) {
		m := &mountEntry{Mount: hosting.Mount{Name: name}}
		if existing != nil { // a write changes what it sends, as vault secrets tune does
			copied := *existing
			m = &copied
		}
		return m, applySentFields(m, d, mountFieldSchemas())
	}, func(m, existing *mountEntry) error {
		var old *hosting.Mount
		if existing != nil {
			old = &existing.Mount
			if b.host.Status(ctx, old).State == hosting.StateRunning {
				changes = m.Changes(old)
			}
		}
		err := b.host.Put(ctx, &m.Mount, old)
		if errors.Is(err, hosting.ErrStillStarting) {
			stillStarting = true // stored; the start goes on
			return nil
		}
		return err
	})
	if err != nil {
		return reqerr.Respond(err)
	}
	resp := b.mountResponse(ctx, m)
	if len(changes) > 0 {
		// A write over a live mount is a change to it, not a new mount:
		// say so, as its clients saw it restart.
		resp.AddWarning(fmt.Sprintf("hosted mount %s was running and restarted with its new settings (%s); its data is kept",
			name, strings.Join(changes, ", ")))
	}
	if stillStarting {
		resp.AddWarning(fmt.Sprintf("hosted mount %s is stored and its plugin is still starting (a pull or a slow handshake): "+
			"read %shosted/%s for its state; a start that fails leaves it stopped with the reason, and its next request tries again",
			name, req.MountPoint, name))
	}
	if resp.Data["state"] == hosting.StatePendingReload {
		resp.AddWarning(fmt.Sprintf("the plugin's sudo or unauthenticated paths differ from those Vault enforces for this name; until Vault reads them its requests are refused: run `"+
			hosting.ReloadCommandFormat+"`", req.MountPoint))
	}
	return resp, nil
}

func (b *backend) mountResponse(ctx context.Context, m *mountEntry) *logical.Response {
	data := fieldData(m)
	if m.Options == nil {
		data["options"] = map[string]string{}
	}
	data["special_paths"] = fieldData(&m.Paths)
	st := b.host.Status(ctx, &m.Mount)
	started := ""
	if !st.Started.IsZero() {
		started = st.Started.UTC().Format(time.RFC3339)
	}
	shared := st.Shared
	if shared == nil {
		shared = []string{}
	}
	for k, v := range map[string]interface{}{
		"state": st.State, "reason": st.Reason, "container_id": st.ContainerID, "oci_runtime": st.OCIRuntime,
		"started_at": started, "restarts": st.Restarts, "outdated": st.Outdated, "shared_with": shared,
	} {
		data[k] = v
	}
	return &logical.Response{Data: data}
}

func (b *backend) pathMountRead(ctx context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, err := mountName(d)
	if err != nil {
		return reqerr.Respond(err)
	}
	m, err := b.catalog.Mount(ctx, name)
	if err != nil || m == nil {
		return nil, err
	}
	resp := b.mountResponse(ctx, m)
	resp.Data["health"] = healthData(b.host.Health(ctx, &m.Mount))
	return resp, nil
}

func (b *backend) pathMountDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	var deleted *mountEntry
	name, err := mountName(d)
	if err == nil {
		force := d.Get("force").(bool)
		deleted, err = b.catalog.DeleteMount(ctx, name, func(m *mountEntry) error { return b.host.Remove(ctx, &m.Mount, force, req.MountPoint) })
	}
	if err != nil {
		return reqerr.Respond(err)
	}
	if deleted != nil && b.catalog.kind.pluginType == "auth" {
		// Vault revokes an auth mount's tokens when it is disabled; a
		// plugin cannot revoke tokens, and never hears of them after a
		// login. They outlive the hosted mount until they expire, and can no
		// longer be renewed: the operator is told how to revoke them.
		resp := &logical.Response{}
		resp.AddWarning(fmt.Sprintf("tokens created by logins through %s%s%s/ stay valid until they expire, and can no longer be renewed; "+
			"revoke them now with: vault token revoke -mode=path %s%s%s/", req.MountPoint, hosting.Prefix, name, req.MountPoint, hosting.Prefix, name))
		return resp, nil
	}
	return nil, nil
}

func (b *backend) pathReload(ctx context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	pluginName, names := d.Get("plugin").(string), d.Get("mounts").([]string)
	if (pluginName == "") == (len(names) == 0) {
		return logical.ErrorResponse("give either plugin (reload every mount of it) or mounts (a list of hosted mounts), not both"), nil
	}
	if pluginName != "" {
		mounts, err := b.catalog.Mounts(ctx)
		if err != nil {
			return nil, err
		}
		for _, m := range mounts {
			if m.Plugin == pluginName {
				names = append(names, m.Name)
			}
		}
		if len(names) == 0 {
			return logical.ErrorResponse(fmt.Sprintf("no hosted mount uses plugin %q", pluginName)), nil
		}
	}
	failed := b.host.Reload(ctx, names)
	reloaded := []string{}
	for _, n := range names {
		if _, bad := failed[n]; !bad {
			reloaded = append(reloaded, n)
		}
	}
	sort.Strings(reloaded)
	failedData := map[string]interface{}{}
	for k, v := range failed {
		failedData[k] = v
	}
	resp := &logical.Response{Data: map[string]interface{}{"reloaded": reloaded, "failed": failedData}}
	if len(failed) > 0 {
		resp.AddWarning(fmt.Sprintf("%d of %d mounts did not start: see failed", len(failed), len(names)))
	}
	return resp, nil
}
