package runtimecatalog

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/reqerr"
)

func newRuntimeBuilder(name string, cpu int64) func(*runtimeEntry) (*runtimeEntry, error) {
	return func(*runtimeEntry) (*runtimeEntry, error) {
		r := newRuntimeEntry(name)
		r.NanoCPUs = cpu
		return r, nil
	}
}

func newPluginBuilder(id pluginID, runtimeName string) func(*pluginEntry) (*pluginEntry, error) {
	return func(*pluginEntry) (*pluginEntry, error) {
		p := newPluginEntry(id)
		p.Image, p.Version, p.Runtime = "example/kv", "1.0.0", runtimeName
		return p, nil
	}
}

func isRequestError(err error, text string) bool {
	return reqerr.Is(err) && err.Error() == text
}

func TestCatalogReferenceRules(t *testing.T) {
	ctx := context.Background()
	s := &logical.InmemStorage{}
	c := newCatalog(s)

	kv := pluginID{"secret", "kv"}
	if _, err := c.WritePlugin(ctx, kv, newPluginBuilder(kv, "rt")); !isRequestError(err, `plugin runtime "rt" does not exist`) {
		t.Fatalf("plugin with a missing runtime: %v", err)
	}
	if _, err := c.WriteRuntime(ctx, "rt", newRuntimeBuilder("rt", 50_000_000)); err != nil {
		t.Fatal(err)
	}
	auth := pluginID{"auth", "kv"}
	for _, id := range []pluginID{kv, auth} {
		if _, err := c.WritePlugin(ctx, id, newPluginBuilder(id, "rt")); err != nil {
			t.Fatal(err)
		}
	}
	err := c.DeleteRuntime(ctx, "rt")
	if !isRequestError(err, `unable to delete "rt" runtime. Registered plugins=[auth/kv secret/kv] are referencing it.`) {
		t.Fatalf("deleting a runtime in use: %v", err)
	}
	if r, _ := c.Runtime(ctx, "rt"); r == nil {
		t.Fatal("a refused deletion removed the runtime")
	}
	// A fresh catalog on the same storage sees the same, and the same users.
	fresh := newCatalog(s)
	users, err := fresh.PluginsUsing(ctx, "rt")
	if err != nil || len(users) != 2 || users[0] != auth || users[1] != kv {
		t.Fatalf("users after a reload = %v (%v)", users, err)
	}

	for _, id := range []pluginID{kv, auth} {
		if err := c.DeletePlugin(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.DeleteRuntime(ctx, "rt"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteRuntime(ctx, "rt"); err != nil {
		t.Fatalf("deleting what is not there: %v", err)
	}
	if keys, _ := s.List(ctx, ""); len(keys) != 0 {
		t.Fatalf("storage after deleting everything: %v", keys)
	}
}

func TestCatalogRejectedWritesChangeNothing(t *testing.T) {
	ctx := context.Background()
	s := &logical.InmemStorage{}
	c := newCatalog(s)
	if _, err := c.WriteRuntime(ctx, "rt", newRuntimeBuilder("rt", 50_000_000)); err != nil {
		t.Fatal(err)
	}
	_, gen, _ := c.Runtimes(ctx)
	if _, err := c.WriteRuntime(ctx, "rt", newRuntimeBuilder("rt", -1)); !isRequestError(err, "runtime cpu in nanos cannot be negative") {
		t.Fatalf("negative cpu: %v", err)
	}
	buildFails := errors.New("build failed")
	if _, err := c.WriteRuntime(ctx, "rt", func(*runtimeEntry) (*runtimeEntry, error) { return nil, buildFails }); err != buildFails {
		t.Fatalf("a failed build: %v", err)
	}
	r, _ := c.Runtime(ctx, "rt")
	if _, after, _ := c.Runtimes(ctx); r.NanoCPUs != 50_000_000 || after != gen {
		t.Fatalf("rejected writes changed the runtime (%d) or the generation (%d, was %d)", r.NanoCPUs, after, gen)
	}
}

func TestCatalogGenerationFollowsChanges(t *testing.T) {
	ctx := context.Background()
	s := &logical.InmemStorage{}
	c := newCatalog(s)
	_, g0, _ := c.Runtimes(ctx)
	c.WriteRuntime(ctx, "a", newRuntimeBuilder("a", 0))
	_, g1, _ := c.Runtimes(ctx)
	storeRuntimeBehindTheBackend(t, s, newRuntimeEntry("b"))
	c.invalidate(runtimeKey("b"))
	sorted, g2, _ := c.Runtimes(ctx)
	if !(g0 < g1 && g1 < g2) || len(sorted) != 2 || sorted[1].Name != "b" {
		t.Fatalf("generations %d %d %d, runtimes %v", g0, g1, g2, sorted)
	}
}

func TestCatalogToRun(t *testing.T) {
	ctx := context.Background()
	c := newCatalog(&logical.InmemStorage{})
	c.WriteRuntime(ctx, "rt", newRuntimeBuilder("rt", 10_000_000_000))
	id := pluginID{"secret", "kv"}
	c.WritePlugin(ctx, id, newPluginBuilder(id, "rt"))
	p, r, err := c.ToRun(ctx, id)
	if err != nil || p.Image != "example/kv" || r.NanoCPUs != 10_000_000_000 || r.Name != "rt" {
		t.Fatalf("ToRun = %+v %+v %v", p, r, err)
	}
	_, _, err = c.ToRun(ctx, pluginID{"secret", "nope"})
	var coded logical.HTTPCodedError
	if !errors.As(err, &coded) || coded.Code() != http.StatusNotFound {
		t.Fatalf("missing plugin: %v", err)
	}
}

// The envelope's start is padded so its base64 joins the cached body's:
// every padding length decodes to the envelope with the request's own ID.
func TestRawListResponseForEveryPadding(t *testing.T) {
	rest, err := encodeRuntimeList([]*runtimeEntry{newRuntimeEntry("a")})
	if err != nil {
		t.Fatal(err)
	}
	body, err := newListBody(rest, false)
	if err != nil {
		t.Fatal(err)
	}
	pads := map[int]bool{}
	for _, id := range []string{"", "a", "ab", "abc", `q"uote`, strings.Repeat("x", 37)} {
		start := `{"request_id":` + string(mustJSON(t, id)) + `,"lease_id":"","renewable":false,"lease_duration":0,"data":`
		pads[len(start)%3] = true
		resp, err := body.response(id, false)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := base64.StdEncoding.DecodeString(resp.Data[logical.HTTPRawBody].(string))
		if err != nil {
			t.Fatalf("id %q: %v", id, err)
		}
		var envelope logical.HTTPResponse
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&envelope); err != nil || envelope.RequestID != id || len(envelope.Data["keys"].([]interface{})) != 1 {
			t.Fatalf("id %q: %v %#v", id, err, envelope)
		}
	}
	if len(pads) != 3 {
		t.Fatalf("the cases covered paddings %v, not all three", pads)
	}
}

func mustJSON(t *testing.T, v interface{}) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Writes have existence checks, so a policy can tell create from update.
func TestWritesHaveExistenceChecks(t *testing.T) {
	b, s := newTestBackend(t)
	mustDo(t, b, s, logical.UpdateOperation, "catalog/container/rt", nil)
	mustDo(t, b, s, logical.UpdateOperation, "plugins/catalog/secret/kv", pluginData(nil))
	for path, want := range map[string]bool{
		"catalog/container/rt": true, "catalog/container/nope": false, "catalog/container/-bad": false,
		"plugins/catalog/secret/kv": true, "plugins/catalog/auth/kv": false,
	} {
		checkFound, exists, err := b.HandleExistenceCheck(context.Background(),
			&logical.Request{Operation: logical.CreateOperation, Path: path, Storage: s})
		if err != nil || !checkFound || exists != want {
			t.Errorf("%s: checkFound %v exists %v err %v, want exists %v", path, checkFound, exists, err, want)
		}
	}
	// A create is answered as a write.
	resp, err := do(t, b, s, logical.CreateOperation, "catalog/container/new", map[string]interface{}{"cpu_nanos": 20000000})
	if err != nil || resp != nil {
		t.Fatalf("create: %v %#v", err, resp)
	}
}
