package runtimecatalog

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/hosting"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/reqerr"
)

func TestCatalogMountRules(t *testing.T) {
	ctx := context.Background()
	s := &logical.InmemStorage{}
	c := newCatalog(s)
	started := 0
	start := func(m, _ *mountEntry) error { started++; m.UUID = "u"; return nil }
	build := func(plugin string) func(*mountEntry) (*mountEntry, error) {
		return func(*mountEntry) (*mountEntry, error) {
			return &mountEntry{Mount: hosting.Mount{Name: "m", Plugin: plugin}}, nil
		}
	}
	if _, err := c.WriteMount(ctx, "m", build("kv"), start); !isRequestError(err,
		`no secret plugin "kv" is registered: register it at plugins/catalog/secret/kv`) {
		t.Fatalf("missing plugin: %v", err)
	}
	auth := pluginID{"auth", "kv"}
	c.WritePlugin(ctx, auth, newPluginBuilder(auth, ""))
	if _, err := c.WriteMount(ctx, "m", build("kv"), start); !isRequestError(err,
		`plugin "kv" is registered as auth, not secret: auth plugins are hosted by an auth mount of this plugin `+
			`(vault plugin register -sha256=SHA256 auth vault-plugin-runtime-catalog, then vault auth enable -path=NAME vault-plugin-runtime-catalog)`) {
		t.Fatalf("auth plugin: %v", err)
	}
	kv := pluginID{"secret", "kv"}
	c.WritePlugin(ctx, kv, newPluginBuilder(kv, ""))
	failing := func(*mountEntry, *mountEntry) error {
		return reqerr.BadRequestf("plugin secret/kv did not start: missing image")
	}
	if _, err := c.WriteMount(ctx, "m", build("kv"), failing); err == nil {
		t.Fatal("a mount that did not start was accepted")
	}
	if keys, _ := s.List(ctx, mountStoragePrefix); len(keys) != 0 || started != 0 {
		t.Fatalf("a refused mount stored %v", keys)
	}
	if _, err := c.WriteMount(ctx, "m", build("kv"), start); err != nil || started != 1 {
		t.Fatalf("mount: %v (started %d)", err, started)
	}
	if err := c.DeletePlugin(ctx, kv); !isRequestError(err, "unable to delete plugin secret/kv. Hosted mounts=[m] are using it.") {
		t.Fatalf("deleting a hosted plugin: %v", err)
	}
	refuse := errors.New("leases outstanding")
	if _, err := c.DeleteMount(ctx, "m", func(*mountEntry) error { return refuse }); err != refuse {
		t.Fatalf("a refused stop: %v", err)
	}
	if m, _ := newCatalog(s).Mount(ctx, "m"); m == nil || m.UUID != "u" {
		t.Fatalf("a refused deletion lost the mount: %+v", m)
	}
	if m, err := c.DeleteMount(ctx, "m", func(*mountEntry) error { return nil }); err != nil || m == nil || m.Name != "m" {
		t.Fatalf("delete: %+v %v", m, err)
	}
	if m, err := c.DeleteMount(ctx, "m", func(*mountEntry) error { t.Error("stopped a mount that is not there"); return nil }); err != nil || m != nil {
		t.Fatalf("deleting what is not there: %+v %v", m, err)
	}
	if err := c.DeletePlugin(ctx, kv); err != nil {
		t.Fatalf("deleting a plugin no longer hosted: %v", err)
	}
}

// A hosted mount stored before the host became a package of its own reads
// back the same, and is written again with the same fields.
func TestStoredMountFormatUnchanged(t *testing.T) {
	before := `{"format":1,"name":"kv","plugin":"kv","options":{"version":"2"},"description":"team kv",` +
		`"uuid":"0b7e6a52-7d3c-4f7e-9a55-1a2b3c4d5e6f","special_paths":{"root":["admin"],"unauthenticated":null}}`
	m, err := decodeMount(&logical.StorageEntry{Key: mountKey("kv"), Value: []byte(before)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := &mountEntry{Mount: hosting.Mount{Name: "kv", Plugin: "kv", Options: map[string]string{"version": "2"},
		UUID: "0b7e6a52-7d3c-4f7e-9a55-1a2b3c4d5e6f", Paths: hosting.Paths{Root: []string{"admin"}}}, Description: "team kv"}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("read back %+v\nwant %+v", m, want)
	}
	se, err := logical.StorageEntryJSON(mountKey("kv"), storedMount{mountEntryFormat, m})
	if err != nil {
		t.Fatal(err)
	}
	var got, old map[string]interface{}
	json.Unmarshal(se.Value, &got)
	json.Unmarshal([]byte(before), &old)
	if !reflect.DeepEqual(got, old) {
		t.Fatalf("written as %s\nbefore %s", se.Value, before)
	}
	for key, want := range map[string]string{hostedData(m.UUID): "hosted/" + m.UUID + "/", leasesKey(m.UUID): "leases/" + m.UUID} {
		if key != want {
			t.Errorf("key %s, before %s", key, want)
		}
	}
}

// countingStorage counts the Gets that reach Vault's storage.
type countingStorage struct {
	logical.InmemStorage
	gets atomic.Int32
}

func (s *countingStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	s.gets.Add(1)
	return s.InmemStorage.Get(ctx, key)
}

// Hosted mounts' storage is read through the catalog's cache: a second
// read is answered here, a key Vault invalidates is read again, two mounts
// never share an entry, and the setting turns it off at the next start.
func TestHostedStorageIsReadThroughACoherentCache(t *testing.T) {
	ctx := context.Background()
	s := &countingStorage{}
	b := newBackend(s)
	if err := b.Setup(ctx, &logical.BackendConfig{System: logical.TestSystemView(), StorageView: s}); err != nil {
		t.Fatal(err)
	}
	store := hostStore{b.catalog}
	one, two := store.Data("u1"), store.Data("u2")
	read := func(v logical.Storage, key string) string {
		t.Helper()
		se, err := v.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if se == nil {
			return "<none>"
		}
		return string(se.Value)
	}
	if err := one.Put(ctx, &logical.StorageEntry{Key: "k", Value: []byte("one")}); err != nil {
		t.Fatal(err)
	}
	if err := two.Put(ctx, &logical.StorageEntry{Key: "k", Value: []byte("two")}); err != nil {
		t.Fatal(err)
	}
	before := s.gets.Load()
	if read(one, "k") != "one" || read(two, "k") != "two" || read(one, "k") != "one" || read(two, "k") != "two" {
		t.Fatal("two mounts' same key")
	}
	if got := s.gets.Load() - before; got != 2 {
		t.Fatalf("%d reads reached storage for two keys read twice each, want 2", got)
	}
	// Another node writes; Vault invalidates the key here.
	if err := s.Put(ctx, &logical.StorageEntry{Key: "hosted/u1/k", Value: []byte("elsewhere")}); err != nil {
		t.Fatal(err)
	}
	b.InvalidateKey(ctx, "hosted/u1/k")
	if read(one, "k") != "elsewhere" || read(two, "k") != "two" {
		t.Fatal("after the invalidation")
	}
	if err := one.Delete(ctx, "k"); err != nil || read(one, "k") != "<none>" {
		t.Fatalf("after a delete: %v", err)
	}
	// Turned off: every read goes to storage.
	if err := b.catalog.WriteSettings(ctx, settingsEntry{DisableHostedStorageCache: true}); err != nil {
		t.Fatal(err)
	}
	uncached := store.Data("u2")
	before = s.gets.Load()
	read(uncached, "k")
	read(uncached, "k")
	if got := s.gets.Load() - before; got != 2 {
		t.Fatalf("the cache turned off: %d of 2 reads reached storage", got)
	}
	// A cached view of the mount still alive beside it (an earlier backend
	// finishing a request) holds an entry; a write through the uncached
	// view drops it, so neither answers the older value.
	if read(two, "k") != "two" || read(two, "k") != "two" {
		t.Fatal("the cached view")
	}
	if err := uncached.Put(ctx, &logical.StorageEntry{Key: "k", Value: []byte("written uncached")}); err != nil {
		t.Fatal(err)
	}
	if got := read(two, "k"); got != "written uncached" {
		t.Fatalf("a cached view after an uncached one's write reads %q", got)
	}
	if err := b.catalog.WriteSettings(ctx, settingsEntry{}); err != nil {
		t.Fatal(err)
	}
	if got := read(store.Data("u2"), "k"); got != "written uncached" {
		t.Fatalf("a cached view after turning the cache on again reads %q", got)
	}
}
