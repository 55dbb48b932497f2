package runtimecatalog

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// GET metrics answers Prometheus' text format, as Vault's own
// sys/metrics?format=prometheus does, with the catalog's counts moving as
// it changes; it needs no sudo (it is not a root path).
func TestMetricsAreTheTextFormat(t *testing.T) {
	b, s := newTestBackend(t)
	mustDo(t, b, s, logical.UpdateOperation, "catalog/container/rt-a", map[string]interface{}{"oci_runtime": "runc"})
	mustDo(t, b, s, logical.UpdateOperation, "catalog/container/rt-b", map[string]interface{}{"oci_runtime": "runc"})
	resp, err := b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "metrics", Storage: s})
	if err != nil || resp == nil {
		t.Fatalf("metrics: %v %v", resp, err)
	}
	if ct := resp.Data[logical.HTTPContentType]; ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("content type %v", ct)
	}
	body, err := base64.StdEncoding.DecodeString(resp.Data[logical.HTTPRawBody].(string))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# TYPE runtime_catalog_runtimes gauge\nruntime_catalog_runtimes 2\n",
		"runtime_catalog_plugins 0\n", "runtime_catalog_hosted_mounts 0\n", "runtime_catalog_list_cache_generation "} {
		if !strings.Contains(string(body), want) {
			t.Errorf("no %q in:\n%s", want, body)
		}
	}
	for _, root := range b.SpecialPaths().Root {
		if root == "metrics" {
			t.Error("metrics is a root path: a scrape token would need sudo")
		}
	}
}
