package runtimecatalog

import (
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// The bound on hosted answers reads as the one in force, and refuses what
// gRPC or sense cannot take, naming the field and the rule.
func TestConfigMaxHostedResponse(t *testing.T) {
	b, s := newTestBackend(t)
	if got := mustDo(t, b, s, logical.ReadOperation, "config", nil).Data["max_hosted_response_bytes"]; got != int64(DefaultMaxHostedResponse) {
		t.Fatalf("default: %v", got)
	}
	for _, bad := range []int64{1024, 1 << 31} {
		want := "max_hosted_response_bytes is " + map[int64]string{1024: "1024", 1 << 31: "2147483648"}[bad] +
			": it is at least 1048576 (1 MiB) and at most 2147483647 (gRPC's bound)"
		if got := errorOf(t, b, s, logical.UpdateOperation, "config", map[string]interface{}{"max_hosted_response_bytes": bad}); got != want {
			t.Errorf("%d:\n got %s\nwant %s", bad, got, want)
		}
	}
	mustDo(t, b, s, logical.UpdateOperation, "config", map[string]interface{}{"max_hosted_response_bytes": 2 << 20})
	if got := mustDo(t, b, s, logical.ReadOperation, "config", nil).Data["max_hosted_response_bytes"]; got != int64(2<<20) {
		t.Fatalf("after a write: %v", got)
	}
	if settings, _ := newCatalog(s).Settings(t.Context()); settings.maxHostedResponse() != 2<<20 {
		t.Fatalf("stored: %+v", settings)
	}
}
