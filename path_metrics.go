package runtimecatalog

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

const (
	pathMetricsHelpSyn  = "The hosted mounts' and the catalog's metrics, in Prometheus' text format."
	pathMetricsHelpDesc = `
For a Prometheus server to scrape through Vault, with a token whose policy
allows read on this path (it needs no sudo):

  metrics_path: /v1/MOUNT/metrics
  authorization: { credentials: TOKEN }

Per hosted mount: requests by operation and outcome, their latency, state,
restarts by cause, failed starts, OOM kills, and its container's memory,
memory limit, CPU time and pids as its engine reports them (a figure the
engine does not give is left out, never 0). For the catalog: runtimes,
plugins, hosted mounts, and the generation of its list cache.
`
	// metricsContentType is Prometheus' text format, as Vault's own
	// sys/metrics?format=prometheus answers.
	metricsContentType = "text/plain; version=0.0.4; charset=utf-8"
)

func pathMetrics(b *backend) []*framework.Path {
	return []*framework.Path{{
		Pattern:      "metrics$",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "metrics"},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{Callback: b.pathMetricsRead, Summary: pathMetricsHelpSyn,
				Responses: map[int][]framework.Response{http.StatusOK: {{Description: "Prometheus' text format", MediaType: "text/plain"}}}},
		},
		HelpSynopsis: pathMetricsHelpSyn, HelpDescription: pathMetricsHelpDesc,
	}}
}

// newMetricsRegistry holds what a scrape reports: the host's mounts and the
// catalog's counts.
func (b *backend) newMetricsRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(b.host, catalogCollector{b.catalog})
	return r
}

func (b *backend) pathMetricsRead(_ context.Context, _ *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	families, err := b.metrics.Gather()
	if err != nil {
		return nil, err
	}
	var body bytes.Buffer
	enc := expfmt.NewEncoder(&body, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			return nil, err
		}
	}
	return &logical.Response{Data: map[string]interface{}{
		logical.HTTPStatusCode:  http.StatusOK,
		logical.HTTPContentType: metricsContentType,
		logical.HTTPRawBody:     base64.StdEncoding.EncodeToString(body.Bytes()),
	}}, nil
}

var (
	descRuntimes  = prometheus.NewDesc("runtime_catalog_runtimes", "Plugin runtimes in the catalog.", nil, nil)
	descPlugins   = prometheus.NewDesc("runtime_catalog_plugins", "Container plugins registered.", nil, nil)
	descMounts    = prometheus.NewDesc("runtime_catalog_hosted_mounts", "Hosted mounts stored.", nil, nil)
	descListCache = prometheus.NewDesc("runtime_catalog_list_cache_generation",
		"The catalog's generation: it moves on every change, and the encoded lists are made anew once per generation.", nil, nil)
)

// catalogCollector reports the catalog's counts, from its in-memory index.
type catalogCollector struct{ c *catalog }

func (cc catalogCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRuntimes, descPlugins, descMounts, descListCache} {
		ch <- d
	}
}

func (cc catalogCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	runtimes, generation, err := cc.c.Runtimes(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descRuntimes, err)
		return
	}
	plugins, err := cc.c.Plugins(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descPlugins, err)
		return
	}
	mounts, err := cc.c.Mounts(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descMounts, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(descRuntimes, prometheus.GaugeValue, float64(len(runtimes)))
	ch <- prometheus.MustNewConstMetric(descPlugins, prometheus.GaugeValue, float64(len(plugins)))
	ch <- prometheus.MustNewConstMetric(descMounts, prometheus.GaugeValue, float64(len(mounts)))
	ch <- prometheus.MustNewConstMetric(descListCache, prometheus.GaugeValue, float64(generation))
}
