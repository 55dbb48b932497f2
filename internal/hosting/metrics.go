package hosting

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// Request outcomes, as the requests metric labels them.
const (
	OutcomeOK       = "ok"       // the plugin answered
	OutcomeError    = "error"    // the plugin answered with an error of its own (a 4xx, say)
	OutcomeFailed   = "failed"   // the mount could not answer: not running, failed, gone, timed out
	OutcomeCanceled = "canceled" // its client left before the answer
)

// metrics are the host's counters that requests move; the rest of what a
// scrape reports is read from the mounts' handles when it comes (Collect).
type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newMetrics() *metrics {
	return &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runtime_catalog_hosted_requests_total",
			Help: "Requests to a hosted mount, by operation and outcome (ok, error: the plugin's own, failed: no answer, canceled: the client left).",
		}, []string{"mount", "operation", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "runtime_catalog_hosted_request_duration_seconds",
			Help:    "Time from a hosted mount's request reaching this plugin to its answer, by operation.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"mount", "operation"}),
	}
}

// observe counts one request to mount; pluginError says that the plugin
// itself answered with an error.
func (m *metrics) observe(ctx context.Context, mount string, op logical.Operation, began time.Time, err error, pluginError bool) {
	outcome := OutcomeOK
	switch {
	case err != nil && ctx.Err() != nil:
		outcome = OutcomeCanceled
	case pluginError:
		outcome = OutcomeError
	case err != nil:
		outcome = OutcomeFailed
	}
	m.requests.WithLabelValues(mount, string(op), outcome).Inc()
	m.latency.WithLabelValues(mount, string(op)).Observe(time.Since(began).Seconds())
}

// forget drops a deleted mount's series.
func (m *metrics) forget(mount string) {
	m.requests.DeletePartialMatch(prometheus.Labels{"mount": mount})
	m.latency.DeletePartialMatch(prometheus.Labels{"mount": mount})
}

var (
	descState = prometheus.NewDesc("runtime_catalog_hosted_state",
		"1 for a hosted mount's state now (running, pending_reload, starting, stopped, failed), 0 for the others.", []string{"mount", "state"}, nil)
	descRestarts = prometheus.NewDesc("runtime_catalog_hosted_restarts_total",
		"Restarts of a hosted mount after its container ended, by how it ended (memory_limit, panicked, signal, exited, memory_limit_or_signal, gone).",
		[]string{"mount", "cause"}, nil)
	descFailedStarts = prometheus.NewDesc("runtime_catalog_hosted_failed_starts_total",
		"Starts of a hosted mount's plugin that failed (image, runtime, handshake, setup).", []string{"mount"}, nil)
	descOOMKills = prometheus.NewDesc("runtime_catalog_hosted_oom_kills_total",
		"Kills by the kernel's OOM killer in a hosted mount's containers, as its engine reports them (absent when it does not: Podman).", []string{"mount"}, nil)
	descMemory = prometheus.NewDesc("runtime_catalog_hosted_memory_bytes",
		"Memory in use by a hosted mount's container, less the inactive page cache (as docker stats shows it).", []string{"mount"}, nil)
	descMemoryLimit = prometheus.NewDesc("runtime_catalog_hosted_memory_limit_bytes",
		"The memory limit of a hosted mount's container (the host's memory when its runtime sets none).", []string{"mount"}, nil)
	descCPU = prometheus.NewDesc("runtime_catalog_hosted_cpu_seconds_total",
		"CPU time used by a hosted mount's current container since it started.", []string{"mount"}, nil)
	descPids = prometheus.NewDesc("runtime_catalog_hosted_pids",
		"Processes and threads in a hosted mount's container.", []string{"mount"}, nil)
)

// figureDescs are the metrics of a container's figures, by figure name.
var figureDescs = map[string]struct {
	desc *prometheus.Desc
	kind prometheus.ValueType
}{
	runtime.FigureMemory:      {descMemory, prometheus.GaugeValue},
	runtime.FigureMemoryLimit: {descMemoryLimit, prometheus.GaugeValue},
	runtime.FigureCPU:         {descCPU, prometheus.CounterValue},
	runtime.FigurePids:        {descPids, prometheus.GaugeValue},
}

var states = []string{StateRunning, StatePendingReload, StateStarting, StateStopped, StateFailed}

// Describe sends nothing: the host is an unchecked collector, its series
// come and go with the mounts.
func (h *Host) Describe(chan<- *prometheus.Desc) {}

// Collect reports every hosted mount this host knows: its request
// counters, state, restarts, failed starts, and its container's figures,
// asked of the engines at once, each within usageTimeout.
func (h *Host) Collect(ch chan<- prometheus.Metric) {
	h.metrics.requests.Collect(ch)
	h.metrics.latency.Collect(ch)
	h.mu.Lock()
	handles := make([]*handle, 0, len(h.handles))
	for _, hd := range h.handles {
		handles = append(handles, hd)
	}
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, hd := range handles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hd.collect(h.ctx, ch)
		}()
	}
	wg.Wait()
}

func (hd *handle) collect(ctx context.Context, ch chan<- prometheus.Metric) {
	st, _ := hd.status()
	for _, state := range states {
		value := 0.0
		if st.State == state {
			value = 1
		}
		ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, value, hd.name, state)
	}
	health := hd.health(ctx)
	for cause, n := range health.RestartCauses {
		ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(n), hd.name, cause)
	}
	ch <- prometheus.MustNewConstMetric(descFailedStarts, prometheus.CounterValue, float64(health.FailedStarts), hd.name)
	if health.OOMKillsKnown {
		ch <- prometheus.MustNewConstMetric(descOOMKills, prometheus.CounterValue, float64(health.OOMKills), hd.name)
	}
	u := health.Usage
	if u == nil {
		return
	}
	for _, f := range u.Figures() {
		d := figureDescs[f.Name]
		ch <- prometheus.MustNewConstMetric(d.desc, d.kind, f.Value, hd.name)
	}
}
