package runtimecatalog

import (
	"context"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/hosting"
)

// Factory makes an auth mount a credential backend and a secrets mount a
// logical one, from the plugin_type Vault passes.
func TestFactoryTakesTheMountsKind(t *testing.T) {
	for _, tc := range []struct {
		config map[string]string
		want   logical.BackendType
		hosts  string
	}{
		{map[string]string{"plugin_type": "auth", "plugin_name": "rc"}, logical.TypeCredential, "auth"},
		{map[string]string{"plugin_type": "secret", "plugin_name": "rc"}, logical.TypeLogical, "secret"},
		{nil, logical.TypeLogical, "secret"},
	} {
		b, err := Factory(context.Background(), &logical.BackendConfig{
			StorageView: &logical.InmemStorage{}, System: logical.TestSystemView(), Config: tc.config,
			Logger: logical.TestBackendConfig().Logger,
		})
		if err != nil {
			t.Fatal(err)
		}
		if b.Type() != tc.want || b.(*backend).catalog.kind.pluginType != tc.hosts {
			t.Errorf("config %v: type %v hosting %s, want %v hosting %s", tc.config, b.Type(), b.(*backend).catalog.kind.pluginType, tc.want, tc.hosts)
		}
		b.Cleanup(context.Background())
	}
}

// Each mount hosts plugins of its own kind; the others are refused with a
// 400 that names the mount that can host them, and nothing is stored.
func TestEachMountHostsItsOwnKind(t *testing.T) {
	ctx := context.Background()
	start := func(m, _ *mountEntry) error { m.UUID = "u-" + m.Name; return nil }
	build := func(name, plugin string) func(*mountEntry) (*mountEntry, error) {
		return func(*mountEntry) (*mountEntry, error) {
			return &mountEntry{Mount: hosting.Mount{Name: name, Plugin: plugin}}, nil
		}
	}
	for _, tc := range []struct {
		kind     map[string]string
		hosts    string // the plugin it hosts
		refusals map[string]string
	}{
		{map[string]string{"plugin_type": "secret", "plugin_name": "rc"}, "kv", map[string]string{
			"jwt": `plugin "jwt" is registered as auth, not secret: auth plugins are hosted by an auth mount of this plugin (vault auth enable -path=NAME rc)`,
			"pg": `plugin "pg" is registered as database: database plugins cannot be hosted, since they speak Vault's database plugin protocol, ` +
				`which only Vault's database secrets engine serves`,
			"none": `no secret plugin "none" is registered: register it at plugins/catalog/secret/none`,
		}},
		{map[string]string{"plugin_type": "auth", "plugin_name": "rc"}, "jwt", map[string]string{
			"kv": `plugin "kv" is registered as secret, not auth: secret plugins are hosted by a secrets mount of this plugin (vault secrets enable -path=NAME rc)`,
			"pg": `plugin "pg" is registered as database: database plugins cannot be hosted, since they speak Vault's database plugin protocol, ` +
				`which only Vault's database secrets engine serves`,
			"none": `no auth plugin "none" is registered: register it at plugins/catalog/auth/none`,
		}},
	} {
		s := &logical.InmemStorage{}
		c := newCatalogOf(s, kindOf(tc.kind))
		for _, id := range []pluginID{{"secret", "kv"}, {"auth", "jwt"}, {"database", "pg"}} {
			if _, err := c.WritePlugin(ctx, id, newPluginBuilder(id, "")); err != nil {
				t.Fatal(err)
			}
		}
		for plugin, want := range tc.refusals {
			if _, err := c.WriteMount(ctx, "m", build("m", plugin), start); !isRequestError(err, want) {
				t.Errorf("%s mount hosting %s:\n got %v\nwant %s", tc.kind["plugin_type"], plugin, err, want)
			}
		}
		if keys, _ := s.List(ctx, mountStoragePrefix); len(keys) != 0 {
			t.Errorf("%s mount: refused mounts stored %v", tc.kind["plugin_type"], keys)
		}
		if _, err := c.WriteMount(ctx, "m", build("m", tc.hosts), start); err != nil {
			t.Fatalf("%s mount hosting %s: %v", tc.kind["plugin_type"], tc.hosts, err)
		}
		// What a mount runs is the plugin of its own kind: that one is in
		// use, a plugin of the same name and another type is not.
		own := pluginID{kindOf(tc.kind).pluginType, tc.hosts}
		if err := c.DeletePlugin(ctx, own); !isRequestError(err, "unable to delete plugin "+own.String()+". Hosted mounts=[m] are using it.") {
			t.Errorf("deleting %s, in use: %v", own, err)
		}
		if p, _, err := (hostStore{c}).ToRun(ctx, tc.hosts); err != nil || p.Type != own.Type || p.Name != own.Name {
			t.Errorf("%s mount runs %s/%s (%v), want %s", tc.kind["plugin_type"], p.Type, p.Name, err, own)
		}
	}
}
