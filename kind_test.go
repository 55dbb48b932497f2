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
			"jwt": `plugin "jwt" is registered as auth, not secret: auth plugins are hosted by an auth mount of this plugin ` +
				`(vault plugin register -sha256=SHA256 auth rc, then vault auth enable -path=NAME rc)`,
			"pg": `plugin "pg" is registered as database: database plugins cannot be hosted, since they speak Vault's database plugin protocol, ` +
				`which only Vault's database secrets engine serves`,
			"none": `no secret plugin "none" is registered: register it at plugins/catalog/secret/none`,
		}},
		{map[string]string{"plugin_type": "auth", "plugin_name": "rc"}, "jwt", map[string]string{
			"kv": `plugin "kv" is registered as secret, not auth: secret plugins are hosted by a secrets mount of this plugin ` +
				`(vault plugin register -sha256=SHA256 secret rc, then vault secrets enable -path=NAME rc)`,
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
		// A secrets mount hosts many; an auth mount one, as every login
		// through it gets its accessor. A write over the one it hosts is
		// no second mount.
		_, err := c.WriteMount(ctx, "m2", build("m2", tc.hosts), start)
		if tc.kind["plugin_type"] == "secret" && err != nil {
			t.Errorf("a second hosted secrets mount: %v", err)
		}
		wantOne := `this auth mount hosts "m" already, and an auth mount of this plugin hosts one auth method: every login through it gets ` +
			`this mount's accessor, and Vault keys entity aliases by accessor and name, so a user of "m2" would be the same entity as ` +
			`the user of that name of "m"; host "m2" on an auth mount of its own (vault auth enable -path=NAME rc)`
		if tc.kind["plugin_type"] == "auth" && !isRequestError(err, wantOne) {
			t.Errorf("a second hosted auth mount:\n got %v\nwant %s", err, wantOne)
		}
		if _, err := c.WriteMount(ctx, "m", build("m", tc.hosts), start); err != nil {
			t.Errorf("%s mount: writing over the mount it hosts: %v", tc.kind["plugin_type"], err)
		}
	}
}

// The command a message gives for tuning the mount is the one for its kind.
func TestTuneCommandIsTheMountsKinds(t *testing.T) {
	for config, want := range map[string]string{
		"secret": "vault secrets tune -passthrough-request-headers=Accept-Encoding -allowed-response-headers=Content-Encoding -allowed-response-headers=Vary runtimes/",
		"auth":   "vault auth tune -passthrough-request-headers=Accept-Encoding -allowed-response-headers=Content-Encoding -allowed-response-headers=Vary runtimes/",
	} {
		mountPoint := map[string]string{"secret": "runtimes/", "auth": "auth/runtimes/"}[config]
		if got := tuneCommand(kindOf(map[string]string{"plugin_type": config}), mountPoint); got != want {
			t.Errorf("%s mount at %s:\n got %s\nwant %s", config, mountPoint, got, want)
		}
	}
}
