package runtimecatalog

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/reqerr"
)

const (
	pathConfigHelpSyn  = "Configure the mount: compressed lists, the bound on hosted answers, the hosted storage cache."
	pathConfigHelpDesc = `
compress_lists lets lists (runtimes, plugins, hosted mounts) answer with a
gzip body to clients that ask for one (Accept-Encoding: gzip; the vault CLI
and Go's HTTP client do, plain curl does not). Vault shows a plugin neither
the header nor the plugin's Content-Encoding unless the mount allows both:
enable or tune the mount with
  -passthrough-request-headers=Accept-Encoding
  -allowed-response-headers=Content-Encoding -allowed-response-headers=Vary
first. Turning it on is refused when the request that does it carries no
Accept-Encoding, which is what an untuned mount shows.

max_hosted_response_bytes bounds each answer of a hosted plugin (default
64 MiB, twice Vault's default max_request_size): a larger one is refused with
a 502 naming the bound, before it is read into memory. It applies at a
mount's next start (plugins/reload).

disable_hosted_storage_cache turns off the read-through cache of the hosted
mounts' storage (32 MiB for all of them, least recently used out first):
every read of a hosted plugin's storage then goes to Vault. The cache is
coherent, as every write of a hosted plugin passes through this plugin and
Vault's invalidations of other nodes' writes drop their keys; it applies at
a mount's next start. Needs sudo.
`
)

// tuneCommand is the one command that lets compressed lists through a
// mount of kind k at mountPoint.
func tuneCommand(k mountKind, mountPoint string) string {
	return k.tune + " -passthrough-request-headers=Accept-Encoding -allowed-response-headers=Content-Encoding " +
		"-allowed-response-headers=Vary " + strings.TrimPrefix(mountPoint, "auth/")
}

func pathConfig(b *backend) []*framework.Path {
	fields := map[string]*framework.FieldSchema{
		"compress_lists":               {Type: framework.TypeBool, Description: "Answer lists with a gzip body to clients that ask for one; the mount must pass Accept-Encoding through and allow Content-Encoding and Vary back."},
		"disable_hosted_storage_cache": {Type: framework.TypeBool, Description: "Read hosted mounts' storage from Vault on every read, without this plugin's read-through cache (32 MiB, coherent: every write passes through it). Applies at a mount's next start (plugins/reload)."},
		"max_hosted_response_bytes":    {Type: framework.TypeInt64, Description: "The largest answer a hosted plugin may give, in bytes (default 67108864, 64 MiB; at least 1 MiB); a larger one is refused with a 502 before it is read. Applies at a mount's next start (plugins/reload)."},
	}
	read := map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: fields}}}
	return []*framework.Path{{
		Pattern:      "config$",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "configuration"},
		Fields:       fields,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation:   &framework.PathOperation{Callback: b.pathConfigRead, Summary: "Read the mount's configuration.", Responses: read},
			logical.UpdateOperation: &framework.PathOperation{Callback: b.pathConfigWrite, Summary: "Configure the mount.", Responses: read},
			logical.PatchOperation:  &framework.PathOperation{Callback: b.pathConfigWrite, Summary: "Configure the mount.", Responses: read},
		},
		HelpSynopsis: pathConfigHelpSyn, HelpDescription: pathConfigHelpDesc,
	}}
}

func (b *backend) pathConfigRead(ctx context.Context, _ *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	settings, err := b.catalog.Settings(ctx)
	if err != nil {
		return nil, err
	}
	data := fieldData(&settings)
	data["max_hosted_response_bytes"] = settings.maxHostedResponse()
	return &logical.Response{Data: data}, nil
}

func (b *backend) pathConfigWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	settings, err := b.catalog.Settings(ctx)
	if err != nil {
		return nil, err
	}
	if err := applySentFields(&settings, d, pathConfig(b)[0].Fields); err != nil {
		return reqerr.Respond(err)
	}
	if err := settings.validate(); err != nil {
		return reqerr.Respond(err)
	}
	// Gzip bytes that Vault strips the Content-Encoding of would reach
	// clients as garbage: what can be seen of the mount's tuning is checked.
	if settings.CompressLists && !acceptsGzip(req.Headers) {
		return logical.ErrorResponse(fmt.Sprintf("compress_lists needs the mount to pass Accept-Encoding through and to let "+
			"Content-Encoding and Vary back: run `%s`, then set it again with a client that sends Accept-Encoding: gzip "+
			"(the vault CLI does). This request carried none.", tuneCommand(b.catalog.kind, req.MountPoint))), nil
	}
	if err := b.catalog.WriteSettings(ctx, settings); err != nil {
		return nil, err
	}
	return b.pathConfigRead(ctx, req, d)
}

// listsGzipped says whether this list request gets a gzip body: the mount
// was configured for it, the client asked for it, and it is not wrapped
// (Vault would store the wrapped body, and lose its headers).
func (b *backend) listsGzipped(ctx context.Context, req *logical.Request) (bool, error) {
	if req.WrapInfo != nil || !acceptsGzip(req.Headers) {
		return false, nil
	}
	settings, err := b.catalog.Settings(ctx)
	return settings.CompressLists, err
}

// listAnswer is a list's response, compressed for this request when it was
// negotiated; with warnings (which a raw body would drop) it stays data.
func (b *backend) listAnswer(ctx context.Context, req *logical.Request, resp *logical.Response) (*logical.Response, error) {
	gzipped, err := b.listsGzipped(ctx, req)
	if err != nil || !gzipped || len(resp.Warnings) > 0 {
		if err != nil {
			return nil, err
		}
		return wrappable(req, resp)
	}
	return gzipData(req.ID, resp.Data)
}
