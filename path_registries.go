package runtimecatalog

import (
	"context"
	"net/http"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/reqerr"
)

const (
	pathRegistriesHelpSyn  = "Credentials for the private registries plugin images are pulled from."
	pathRegistriesHelpDesc = `
A plugin whose pull_policy is "missing" is pulled from the registry its
oci_image names (127.0.0.1:5000 in 127.0.0.1:5000/kv-plugin). When
credentials are stored here under that registry, the pull sends them to the
engine as its registry auth. The password is stored in Vault's storage,
sealed like any secret, and never returned: a read shows the user and
password_set. Needs the sudo capability.
`
)

func pathRegistries(b *backend) []*framework.Path {
	fields := map[string]*framework.FieldSchema{
		"registry": {Type: framework.TypeString, Description: "The registry: host and optional port, as an image names it (127.0.0.1:5000)."},
		"username": {Type: framework.TypeString, Description: "The registry's user."},
		"password": {Type: framework.TypeString, Description: "The user's password or token; never returned.", DisplayAttrs: &framework.DisplayAttributes{Sensitive: true}},
	}
	read := map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
		"registry":     fields["registry"],
		"username":     fields["username"],
		"password_set": {Type: framework.TypeBool, Description: "Whether a password is stored (it is never returned)."},
	}}}}
	noContent := map[int][]framework.Response{http.StatusNoContent: {{Description: "OK"}}}
	return []*framework.Path{
		{
			Pattern:      "registries/?$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "registries"},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{Callback: b.pathRegistriesList, Summary: "List the registries with stored credentials."},
			},
			HelpSynopsis: pathRegistriesHelpSyn, HelpDescription: pathRegistriesHelpDesc,
		},
		{
			Pattern:      "registries/(?P<registry>[^/]+)$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "registry-credentials"},
			Fields:       fields,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: &framework.PathOperation{Callback: b.pathRegistryWrite, Summary: "Store a registry's credentials.", Responses: noContent},
				logical.ReadOperation:   &framework.PathOperation{Callback: b.pathRegistryRead, Summary: "Read a registry's user (never its password).", Responses: read},
				logical.DeleteOperation: &framework.PathOperation{Callback: b.pathRegistryDelete, Summary: "Remove a registry's credentials.", Responses: noContent},
			},
			HelpSynopsis: pathRegistriesHelpSyn, HelpDescription: pathRegistriesHelpDesc,
		},
	}
}

func (b *backend) pathRegistriesList(ctx context.Context, _ *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	keys, err := b.catalog.Registries(ctx)
	if err != nil {
		return nil, err
	}
	return logical.ListResponse(keys), nil
}

func (b *backend) pathRegistryWrite(ctx context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	r := &registryEntry{Registry: d.Get("registry").(string), Username: d.Get("username").(string), Password: d.Get("password").(string)}
	return reqerr.Respond(b.catalog.WriteRegistry(ctx, r))
}

func (b *backend) pathRegistryRead(ctx context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	r, err := b.catalog.Registry(ctx, d.Get("registry").(string))
	if err != nil || r == nil {
		return nil, err
	}
	return &logical.Response{Data: r.toResponseData()}, nil
}

func (b *backend) pathRegistryDelete(ctx context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	return nil, b.catalog.DeleteRegistry(ctx, d.Get("registry").(string))
}
