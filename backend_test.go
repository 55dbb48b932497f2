package runtimecatalog

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/vault/sdk/helper/testhelpers/schema"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime/docker"
)

func newTestBackend(t testing.TB) (*backend, logical.Storage) {
	t.Helper()
	storage := &logical.InmemStorage{}
	b := newBackend(storage)
	b.engines.Dial = dialFakeEngine
	conf := &logical.BackendConfig{System: logical.TestSystemView(), StorageView: storage}
	if err := b.Setup(context.Background(), conf); err != nil {
		t.Fatal(err)
	}
	return b, conf.StorageView
}

// do sends one request to the backend. A response that is not an error is
// checked against the response schema the path declares for the operation.
func do(t testing.TB, b *backend, s logical.Storage, op logical.Operation, path string, data map[string]interface{}) (*logical.Response, error) {
	t.Helper()
	req := &logical.Request{ID: "test-request", Operation: op, Path: path, Storage: s, Data: data}
	resp, err := b.HandleRequest(context.Background(), req)
	if err == nil && resp != nil {
		if _, raw := resp.Data[logical.HTTPRawBody]; raw {
			resp = &logical.Response{Data: decodeRawBody(t, resp)}
		}
	}
	if tt, ok := t.(*testing.T); ok && err == nil && (resp == nil || !resp.IsError()) {
		if route := b.Route(path); route != nil {
			schema.ValidateResponse(tt, schema.GetResponseSchema(tt, route, op), resp, true)
		}
	}
	return resp, err
}

// decodeRawBody turns a raw list response back into its data, as a client
// reads it, after checking it is the envelope Vault itself writes.
func decodeRawBody(t testing.TB, resp *logical.Response) map[string]interface{} {
	t.Helper()
	if resp.Data[logical.HTTPStatusCode] != http.StatusOK || resp.Data[logical.HTTPContentType] != "application/json" {
		t.Fatalf("raw response status/content type: %#v", resp.Data)
	}
	body, err := base64.StdEncoding.DecodeString(resp.Data[logical.HTTPRawBody].(string))
	if err != nil {
		t.Fatalf("raw body is not base64: %v", err)
	}
	var envelope logical.HTTPResponse
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&envelope); err != nil {
		t.Fatalf("raw body %q is not Vault's response envelope: %v", body, err)
	}
	if envelope.RequestID != "test-request" || envelope.Data == nil {
		t.Fatalf("envelope: %#v", envelope)
	}
	return fromJSONNumbers(envelope.Data, true).(map[string]interface{})
}

// fromJSONNumbers turns decoded numbers into what a handler's own data holds:
// integers at the top level as int64 (exactly, which is what a raw body is
// for), numbers nested in lists as float64, as Vault's clients read them.
func fromJSONNumbers(v interface{}, top bool) interface{} {
	switch v := v.(type) {
	case json.Number:
		if n, err := v.Int64(); err == nil && top {
			return n
		}
		f, _ := v.Float64()
		return f
	case map[string]interface{}:
		for k, item := range v {
			v[k] = fromJSONNumbers(item, top)
		}
		return v
	case []interface{}:
		strs := make([]string, 0, len(v))
		for i, item := range v {
			v[i] = fromJSONNumbers(item, false)
			if s, ok := item.(string); ok {
				strs = append(strs, s)
			}
		}
		if top && len(v) > 0 && len(strs) == len(v) { // a top-level list of strings, as the handler built it
			return strs
		}
		return v
	}
	return v
}

// mustDo is do for requests that must succeed.
func mustDo(t testing.TB, b *backend, s logical.Storage, op logical.Operation, path string, data map[string]interface{}) *logical.Response {
	t.Helper()
	resp, err := do(t, b, s, op, path, data)
	if err != nil || (resp != nil && resp.IsError()) {
		t.Fatalf("%s %s: err=%v resp=%#v", op, path, err, resp)
	}
	return resp
}

// errorOf returns the error text of a request that must fail with a 400.
func errorOf(t testing.TB, b *backend, s logical.Storage, op logical.Operation, path string, data map[string]interface{}) string {
	t.Helper()
	resp, err := do(t, b, s, op, path, data)
	if err != nil {
		t.Fatalf("%s %s: want a 400 error response, got error %v", op, path, err)
	}
	if resp == nil || !resp.IsError() {
		t.Fatalf("%s %s: want a 400 error response, got %#v", op, path, resp)
	}
	return resp.Error().Error()
}

// listKeys returns the keys of a list response, raw or not.
func listKeys(t testing.TB, data map[string]interface{}) []string {
	t.Helper()
	switch keys := data["keys"].(type) {
	case []string:
		return keys
	case []interface{}:
		out := make([]string, len(keys))
		for i, k := range keys {
			out[i] = k.(string)
		}
		return out
	case nil:
		return nil
	default:
		t.Fatalf("keys is a %T", keys)
		return nil
	}
}

// fakeEngine answers what an engine runs, for the runtime checks of writes
// and reads; anything else it is asked panics (the embedded nil interface).
type fakeEngine struct {
	runtime.Engine
	facts    runtime.EngineFacts
	down     bool
	withheld bool // answers, but does not say what it runs
}

// fakeEngineAsked counts the questions asked of the fake engines.
var fakeEngineAsked atomic.Int64

// Addresses dialFakeEngine knows: the default engine (with runc and runsc),
// one that runs every container under its default, runc, and one that is
// down.
const (
	fakeOnlyDefaultAddress = "unix:///run/podman/podman.sock"
	fakeDownAddress        = "unix:///run/nothing.sock"
	fakeWithheldAddress    = "unix:///run/withheld.sock"
)

func dialFakeEngine(address string) (runtime.Engine, error) {
	switch address {
	case "":
		return &fakeEngine{facts: runtime.EngineFacts{Address: "unix:///var/run/docker.sock", Runtimes: []string{"runc", "runsc"}, DefaultRuntime: "runc"}}, nil
	case fakeOnlyDefaultAddress:
		return &fakeEngine{facts: runtime.EngineFacts{Address: address, Runtimes: []string{"crun", "kata", "runc", "runsc"}, DefaultRuntime: "runc",
			OnlyDefault: true, Refuse: func(oci string) string { return "this engine runs only runc, not " + oci }}}, nil
	case fakeWithheldAddress:
		return &fakeEngine{facts: runtime.EngineFacts{Address: address}, withheld: true}, nil
	default:
		return &fakeEngine{facts: runtime.EngineFacts{Address: address}, down: true}, nil
	}
}

// Preview is the Docker Engine's create request: previews reach no engine,
// and run-config's tests read its fields.
func (f *fakeEngine) Preview(spec runtime.Spec) (runtime.Preview, error) {
	return docker.With(nil, "").Preview(spec)
}

func (f *fakeEngine) Facts(context.Context) (runtime.EngineFacts, error) {
	fakeEngineAsked.Add(1)
	if f.withheld {
		return f.facts, fmt.Errorf("%w: not for this plugin to see", runtime.ErrFactsWithheld)
	}
	if f.down {
		return f.facts, errors.New("the engine at unix:///run/nothing.sock could not be reached: dial unix /run/nothing.sock: connect: no such file or directory")
	}
	return f.facts, nil
}
