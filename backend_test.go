package runtimecatalog

import (
	"context"
	"testing"

	"github.com/hashicorp/vault/sdk/helper/testhelpers/schema"
	"github.com/hashicorp/vault/sdk/logical"
)

func newTestBackend(t testing.TB) (*backend, logical.Storage) {
	t.Helper()
	b := newBackend()
	conf := &logical.BackendConfig{System: logical.TestSystemView(), StorageView: &logical.InmemStorage{}}
	if err := b.Setup(context.Background(), conf); err != nil {
		t.Fatal(err)
	}
	return b, conf.StorageView
}

// do sends one request to the backend. A response that is not an error is
// checked against the response schema the path declares for the operation.
func do(t testing.TB, b *backend, s logical.Storage, op logical.Operation, path string, data map[string]interface{}) (*logical.Response, error) {
	t.Helper()
	req := &logical.Request{Operation: op, Path: path, Storage: s, Data: data}
	resp, err := b.HandleRequest(context.Background(), req)
	if tt, ok := t.(*testing.T); ok && err == nil && (resp == nil || !resp.IsError()) {
		if route := b.Route(path); route != nil {
			schema.ValidateResponse(tt, schema.GetResponseSchema(tt, route, op), resp, true)
		}
	}
	return resp, err
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
