package hosting

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// What a mount's containers did shows in its health and its metrics: each
// exit once (newest first, with its reason and last output), the restarts
// by cause, the kernel's OOM kills, the requests by outcome, and the
// running container's figures.
func TestHealthAndMetricsFollowTheContainers(t *testing.T) {
	e := &fakeEngine{}
	e.handler = func(ctx context.Context, p *fakePlugin, req *logical.Request) (*logical.Response, error) {
		if ctx.Err() != nil {
			return nil, ctx.Err() // as gRPC answers a call whose client left
		}
		switch req.Path {
		case "huge":
			p.oom.Store(true)
			p.kill()
			return nil, errGone
		case "bad":
			return logical.ErrorResponse("no such thing"), logical.ErrInvalidRequest
		}
		return &logical.Response{Data: map[string]interface{}{"container": p.id}}, nil
	}
	th := newTestHostWith(t, e, func(c *Config) { c.NotCrashSpacing = 1 })
	m := th.mount(t, "kv", "kv")
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := th.read(ctx, "kv", "x"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := th.read(ctx, "kv", "bad"); !errors.Is(err, logical.ErrInvalidRequest) {
		t.Fatalf("the plugin's own error: %v", err)
	}
	th.read(ctx, "kv", "huge") // c1 killed by its memory limit
	if _, err := th.read(ctx, "kv", "x"); err != nil {
		t.Fatal(err)
	}
	th.engine.last().kill() // c2 killed from outside
	if _, err := th.read(ctx, "kv", "x"); err != nil {
		t.Fatal(err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	th.read(canceled, "kv", "x")

	h := th.Health(ctx, m)
	if len(h.Exits) != 2 || h.Exits[0].Reason != runtime.ExitSignal || h.Exits[1].Reason != runtime.ExitMemoryLimit ||
		h.Exits[1].Output[0] != "last line of c1" {
		t.Fatalf("exits, newest first: %+v", h.Exits)
	}
	if h.RestartCauses[runtime.ExitMemoryLimit] != 1 || h.RestartCauses[runtime.ExitSignal] != 1 || len(h.RestartCauses) != 2 {
		t.Fatalf("restart causes: %v", h.RestartCauses)
	}
	if !h.OOMKillsKnown || h.OOMKills != 1 {
		t.Fatalf("OOM kills: %d (known %v), want 1", h.OOMKills, h.OOMKillsKnown)
	}
	if h.Usage == nil || h.Usage.MemoryBytes != 20<<20 || h.Usage.Pids != 7 {
		t.Fatalf("the running container's figures: %+v (%s)", h.Usage, h.UsageError)
	}
	// Asked again, the same exits: each is recorded once.
	if again := th.Health(ctx, m); len(again.Exits) != 2 || again.OOMKills != 1 {
		t.Fatalf("health asked again: %+v", again)
	}

	r := prometheus.NewRegistry()
	r.MustRegister(th.Host)
	for _, want := range []string{
		`runtime_catalog_hosted_requests_total{mount="kv",operation="read",outcome="ok"} 5`,
		`runtime_catalog_hosted_requests_total{mount="kv",operation="read",outcome="error"} 1`,
		`runtime_catalog_hosted_requests_total{mount="kv",operation="read",outcome="failed"} 1`,
		`runtime_catalog_hosted_requests_total{mount="kv",operation="read",outcome="canceled"} 1`,
		`runtime_catalog_hosted_restarts_total{cause="memory_limit",mount="kv"} 1`,
		`runtime_catalog_hosted_restarts_total{cause="signal",mount="kv"} 1`,
		`runtime_catalog_hosted_oom_kills_total{mount="kv"} 1`,
		`runtime_catalog_hosted_state{mount="kv",state="running"} 1`,
		`runtime_catalog_hosted_state{mount="kv",state="failed"} 0`,
		`runtime_catalog_hosted_memory_bytes{mount="kv"} 2.097152e+07`,
		`runtime_catalog_hosted_memory_limit_bytes{mount="kv"} 6.7108864e+07`,
		`runtime_catalog_hosted_pids{mount="kv"} 7`,
		`runtime_catalog_hosted_request_duration_seconds_count{mount="kv",operation="read"} 8`,
		`runtime_catalog_hosted_failed_starts_total{mount="kv"} 0`,
	} {
		if text := gathered(t, r); !strings.Contains(text, want+"\n") {
			t.Errorf("no %s in:\n%s", want, text)
		}
	}

	// A deleted mount's series go with it.
	if err := th.Remove(ctx, m, true, "runtimes/"); err != nil {
		t.Fatal(err)
	}
	if text := gathered(t, r); strings.Contains(text, `mount="kv"`) {
		t.Errorf("the deleted mount's series remain:\n%s", text)
	}
}

// A figure the engine does not give is absent from the metrics, not 0.
func TestMissingFiguresAreLeftOut(t *testing.T) {
	e := &fakeEngine{}
	th := newTestHost(t, e)
	th.mount(t, "kv", "kv")
	if _, err := th.read(context.Background(), "kv", "x"); err != nil {
		t.Fatal(err)
	}
	th.engine.last().noFigures.Store(true)
	r := prometheus.NewRegistry()
	r.MustRegister(th.Host)
	text := gathered(t, r)
	for _, absent := range []string{"runtime_catalog_hosted_memory_bytes", "runtime_catalog_hosted_cpu_seconds_total", "runtime_catalog_hosted_oom_kills_total"} {
		if strings.Contains(text, absent+"{") {
			t.Errorf("%s shown though the engine gave none:\n%s", absent, text)
		}
	}
	if !strings.Contains(text, `runtime_catalog_hosted_pids{mount="kv"} 7`) {
		t.Errorf("the figure the engine gave is missing:\n%s", text)
	}
}

// gathered is what a scrape of r reads, in Prometheus' text format.
func gathered(t *testing.T, r *prometheus.Registry) string {
	t.Helper()
	families, err := r.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}
