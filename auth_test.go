package runtimecatalog

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"google.golang.org/grpc"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/hosting"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// authPlugin is a hosted auth plugin in a fake container: a real framework
// credential backend with a login path, a renew check and an alias
// lookahead, as HashiCorp's JWT plugin has.
type authPlugin struct {
	exited   atomic.Bool
	renewals *atomic.Int32
	config   map[string]string // the mount config it was set up with
}

func (p *authPlugin) Multiplexed(context.Context) (bool, error) { return false, nil }
func (p *authPlugin) Conn(string) grpc.ClientConnInterface      { return nil }
func (p *authPlugin) Exited() bool                              { return p.exited.Load() }
func (p *authPlugin) Leaving() <-chan struct{}                  { return nil } // never
func (p *authPlugin) Explain(cause error) error                 { return cause }
func (p *authPlugin) MemoryKilled() bool                        { return false }
func (p *authPlugin) Panicked() bool                            { return false }
func (p *authPlugin) ID() string                                { return "auth-container" }
func (p *authPlugin) Exit() (runtime.Exit, bool)                { return runtime.Exit{}, false }
func (p *authPlugin) OOMKills() (int64, bool)                   { return 0, false }
func (p *authPlugin) Stop(context.Context)                      { p.exited.Store(true) }
func (p *authPlugin) Usage(context.Context) (runtime.Usage, error) {
	return runtime.Usage{}, errors.New("no engine")
}

func (p *authPlugin) Backend(ctx context.Context, _ string, conf *logical.BackendConfig) (logical.Backend, error) {
	p.config = conf.Config
	login := func(_ context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
		if d.Get("password").(string) != "right" {
			return logical.ErrorResponse("wrong password"), logical.ErrPermissionDenied
		}
		return &logical.Response{Auth: &logical.Auth{
			Policies: []string{"reader"}, Metadata: map[string]string{"role": "dev", "at": req.MountPoint + req.Path},
			InternalData: map[string]interface{}{"role": "dev"}, DisplayName: "alice",
			Alias:        &logical.Alias{Name: "alice"},
			LeaseOptions: logical.LeaseOptions{TTL: time.Hour, MaxTTL: 2 * time.Hour, Renewable: true},
		}}, nil
	}
	b := &framework.Backend{
		BackendType:  logical.TypeCredential,
		PathsSpecial: &logical.Paths{Unauthenticated: []string{"login"}},
		Paths: []*framework.Path{{
			Pattern: "login",
			Fields:  map[string]*framework.FieldSchema{"password": {Type: framework.TypeString}},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: &framework.PathOperation{Callback: login},
				logical.AliasLookaheadOperation: &framework.PathOperation{Callback: func(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
					return &logical.Response{Auth: &logical.Auth{Alias: &logical.Alias{Name: "alice"}}}, nil
				}},
				logical.ResolveRoleOperation: &framework.PathOperation{Callback: func(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
					return logical.ResolveRoleResponse("dev")
				}},
			},
		}},
		AuthRenew: func(_ context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
			if req.Auth.InternalData["role"] != "dev" {
				return nil, errors.New("not a token of role dev")
			}
			p.renewals.Add(1)
			return &logical.Response{Auth: req.Auth}, nil
		},
	}
	return b, b.Setup(ctx, conf)
}

// authMountOn is an auth mount of ours ("auth/runtimes/") on storage,
// whose host starts authPlugins, adding them to started. Vault makes one
// anew (Factory) at every mount, unseal and reload of the mount.
func authMountOn(t *testing.T, storage logical.Storage, started *[]*authPlugin, renewals *atomic.Int32) *backend {
	t.Helper()
	conf := &logical.BackendConfig{
		StorageView: storage, System: logical.TestSystemView(), Logger: hclog.NewNullLogger(),
		Config: map[string]string{"plugin_type": "auth", "plugin_name": "rc"},
	}
	lb, err := Factory(context.Background(), conf)
	if err != nil {
		t.Fatal(err)
	}
	b := lb.(*backend)
	b.host.Close(context.Background())
	b.host = hosting.New(hosting.Config{
		Store: hostStore{b.catalog}, System: b.System, Logger: hclog.NewNullLogger(),
		Start: func(_ context.Context, p runtime.Plugin, _ runtime.Runtime, _ string) (hosting.Plugin, error) {
			if p.Type != "auth" {
				t.Errorf("an auth mount started plugin %s/%s", p.Type, p.Name)
			}
			ap := &authPlugin{renewals: renewals}
			*started = append(*started, ap)
			return ap, nil
		},
	})
	t.Cleanup(func() { b.clean(context.Background()) })
	return b
}

// authMountWithJWT is authMountOn with an auth plugin jwt registered.
func authMountWithJWT(t *testing.T, storage logical.Storage, started *[]*authPlugin, renewals *atomic.Int32) *backend {
	t.Helper()
	b := authMountOn(t, storage, started, renewals)
	id := pluginID{"auth", "jwt"}
	if _, err := b.catalog.WritePlugin(context.Background(), id, newPluginBuilder(id, "")); err != nil {
		t.Fatal(err)
	}
	return b
}

// authRequest is a request to the auth mount at auth/runtimes/.
func authRequest(b *backend, s logical.Storage, op logical.Operation, path string, data map[string]interface{}) (*logical.Response, error) {
	req := &logical.Request{Operation: op, Path: path, Storage: s, Data: data, MountPoint: "auth/runtimes/"}
	return b.HandleRequest(context.Background(), req)
}

// An auth mount hosts auth plugins: their login answers with the auth the
// plugin made, renewals reach its renew check (after a restart too), and
// alias lookahead and role resolution pass through; none of it before
// Vault has read the login path as unauthenticated.
func TestAuthMountRoutesLoginsToHostedAuthPlugins(t *testing.T) {
	s, started, renewals := &logical.InmemStorage{}, &[]*authPlugin{}, &atomic.Int32{}
	b := authMountWithJWT(t, s, started, renewals)
	if b.Type() != logical.TypeCredential {
		t.Fatalf("an auth mount of ours is a %v backend", b.Type())
	}
	resp, err := authRequest(b, s, logical.UpdateOperation, "hosted/jwt", map[string]interface{}{"plugin": "jwt"})
	if err != nil || resp.IsError() {
		t.Fatalf("hosting jwt: %v %v", resp, err)
	}
	if got := (*started)[0].config; got["plugin_type"] != "auth" || got["plugin_name"] != "jwt" {
		t.Errorf("the hosted plugin was set up with %v, want plugin_type auth", got)
	}
	wantWarning := "run `vault write sys/plugins/reload/backend mounts=auth/runtimes/`"
	if resp.Data["state"] != hosting.StatePendingReload || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], wantWarning) {
		t.Fatalf("before Vault read its login path: state %v, warnings %q", resp.Data["state"], resp.Warnings)
	}
	// Until Vault reads the login path as unauthenticated, a login would
	// need a token, and Vault would refuse the auth in its answer.
	login := map[string]interface{}{"password": "right"}
	pending := "the special paths (sudo or unauthenticated) of hosted mount jwt differ from those Vault enforces for it: " +
		"run `vault write sys/plugins/reload/backend mounts=auth/runtimes/` to have them enforced, then retry"
	for _, op := range []logical.Operation{logical.UpdateOperation, logical.AliasLookaheadOperation, logical.ResolveRoleOperation} {
		if resp, err := authRequest(b, s, op, "mounts/jwt/login", login); err == nil || err.Error() != pending || resp != nil {
			t.Fatalf("%s of the login path before the reload: %#v %v", op, resp, err)
		}
	}

	// The reload: Vault cleans the mount up, makes it anew and reads its
	// special paths.
	b.clean(context.Background())
	b = authMountOn(t, s, started, renewals)
	if paths := b.SpecialPaths(); !reflect.DeepEqual(paths.Unauthenticated, []string{"mounts/jwt/login"}) {
		t.Fatalf("unauthenticated paths %v", paths.Unauthenticated)
	}
	resp, err = authRequest(b, s, logical.UpdateOperation, "mounts/jwt/login", login)
	if err != nil || resp == nil || resp.Auth == nil {
		t.Fatalf("login: %#v %v", resp, err)
	}
	auth := resp.Auth
	if !reflect.DeepEqual(auth.Policies, []string{"reader"}) || auth.Alias == nil || auth.Alias.Name != "alice" ||
		auth.InternalData["role"] != "dev" || auth.InternalData[hosting.TokenMountKey] == "" ||
		auth.TTL != time.Hour || auth.MaxTTL != 2*time.Hour || !auth.Renewable || auth.DisplayName != "alice" ||
		auth.Metadata["at"] != "auth/runtimes/mounts/jwt/login" {
		t.Errorf("the auth Vault would turn into a token: %#v", auth)
	}
	if resp, err := authRequest(b, s, logical.UpdateOperation, "mounts/jwt/login", map[string]interface{}{"password": "wrong"}); !errors.Is(err, logical.ErrPermissionDenied) || resp.Auth != nil {
		t.Errorf("a refused login: %#v %v", resp, err)
	}

	renew := func() (*logical.Response, error) {
		req := logical.RenewAuthRequest("mounts/jwt/login", auth, nil)
		req.Storage, req.MountPoint = s, "auth/runtimes/"
		return b.HandleRequest(context.Background(), req)
	}
	if resp, err := renew(); err != nil || resp == nil || resp.Auth == nil || renewals.Load() != 1 {
		t.Fatalf("renew: %#v %v (renewals %d)", resp, err, renewals.Load())
	}
	(*started)[len(*started)-1].exited.Store(true) // docker kill
	if resp, err := renew(); err != nil || resp == nil || resp.Auth == nil || renewals.Load() != 2 || len(*started) != 3 {
		t.Fatalf("renew after the plugin died: %#v %v (renewals %d, starts %d)", resp, err, renewals.Load(), len(*started))
	}

	if resp, err := authRequest(b, s, logical.AliasLookaheadOperation, "mounts/jwt/login", nil); err != nil || resp.Auth == nil || resp.Auth.Alias.Name != "alice" {
		t.Errorf("alias lookahead: %#v %v", resp, err)
	}
	if resp, err := authRequest(b, s, logical.ResolveRoleOperation, "mounts/jwt/login", nil); err != nil || resp.Data["role"] != "dev" {
		t.Errorf("role resolution: %#v %v", resp, err)
	}

	// Deleted and made again under its name, the mount renews none of the
	// old one's tokens, though its plugin's own check would pass.
	if _, err := authRequest(b, s, logical.DeleteOperation, "hosted/jwt", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := authRequest(b, s, logical.UpdateOperation, "hosted/jwt", map[string]interface{}{"plugin": "jwt"}); err != nil {
		t.Fatal(err)
	}
	renewed := renewals.Load()
	resp, err = renew()
	var coded logical.HTTPCodedError
	if !errors.As(err, &coded) || coded.Code() != 400 || resp != nil || renewals.Load() != renewed ||
		err.Error() != "this token was made by an earlier hosted mount named jwt, since deleted: it cannot be renewed by the mount of that name now" {
		t.Fatalf("renewing a token of the deleted mount: %#v %v", resp, err)
	}
}

// Deleting a hosted auth mount says how to revoke the tokens it made, as
// Vault would revoke them on disabling an auth mount.
func TestDeletingAHostedAuthMountSaysHowToRevokeItsTokens(t *testing.T) {
	s, started, renewals := &logical.InmemStorage{}, &[]*authPlugin{}, &atomic.Int32{}
	b := authMountWithJWT(t, s, started, renewals)
	if _, err := authRequest(b, s, logical.UpdateOperation, "hosted/jwt", map[string]interface{}{"plugin": "jwt"}); err != nil {
		t.Fatal(err)
	}
	resp, err := authRequest(b, s, logical.DeleteOperation, "hosted/jwt", nil)
	want := "tokens created by logins through auth/runtimes/mounts/jwt/ stay valid until they expire, and can no longer be renewed; " +
		"revoke them now with: vault token revoke -mode=path auth/runtimes/mounts/jwt/"
	if err != nil || resp == nil || !reflect.DeepEqual(resp.Warnings, []string{want}) {
		t.Fatalf("delete: %#v %v", resp, err)
	}
	if m, _ := b.catalog.Mount(context.Background(), "jwt"); m != nil {
		t.Fatalf("the mount is still stored: %+v", m)
	}
}
