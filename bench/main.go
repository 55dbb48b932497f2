// Command bench measures, side by side on one Vault dev server, the plugin's
// runtime catalog and Vault's built-in sys/plugins/runtimes/catalog holding
// the same N runtimes, with HashiCorp's kv plugin run as an external plugin
// as the reference for a plain external plugin's storage read and write.
// It prints throughput, p50 and p99 latency, the ratios, and the plugin
// process's RSS. `make bench` runs it; nothing here asserts a time.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
)

func main() {
	sizes := flag.String("sizes", "100,1000,10000", "numbers of runtimes to measure with")
	duration := flag.Duration("duration", 3*time.Second, "how long each measurement runs")
	clients := flag.Int("clients", 8, "concurrent clients")
	profile := flag.String("pprof", "", "write Vault's CPU profile during the plugin's largest list measurement to this file")
	kvPlugin := flag.String("kv-plugin", os.Getenv("KV_PLUGIN_BINARY"), "vault-plugin-secrets-kv binary (scripts/build-kv-plugin.sh)")
	hosting := flag.Bool("hosting", true, "measure hosted kv beside Vault's containerized kv (needs Docker and -kv-plugin)")
	servers := flag.String("servers", "vault,openbao", "the servers to measure hosted kv on (OpenBao: beside kv as a plain external plugin; needs $BAO_BINARY, scripts/build-openbao.sh)")
	pods := flag.Bool("pods", true, "measure hosted kv in a pod of the test Kubernetes node beside the same image hosted on Docker (needs root, $RC_K8S_BIN, RC_ACC=1, Docker and -kv-plugin)")
	flag.Parse()

	// Ctrl-C or a kill stops Vault (and with it the plugins) too.
	t := vaulttest.NewProgram()
	defer t.RunCleanups()
	var extra []string
	if *kvPlugin != "" {
		extra = append(extra, *kvPlugin)
	}
	v := vaulttest.Vault.StartDev(t, "runtimes", extra...)
	if *kvPlugin != "" {
		// kv version 1: one storage read per read, one write per write.
		v.MustRun(t, "secrets", "enable", "-path=kv-ext", filepath.Base(*kvPlugin))
	}
	// Compressed lists, as make dev and the README set them up.
	v.CompressLists(t, "runtimes")
	b := &bench{t: t, addr: v.Addr, token: v.Token, clients: *clients, duration: *duration,
		// Go's transport asks for gzip and decodes it, as the vault CLI's
		// does; plain asks for nothing, as curl without --compressed.
		http:  &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *clients * 2}},
		plain: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *clients * 2, DisableCompression: true}}}

	if *kvPlugin != "" {
		b.fill(1000, func(i int) (string, string, string) {
			return "POST", fmt.Sprintf("/v1/kv-ext/key-%05d", i), `{"value":"x"}`
		})
	}
	// The kv reference is measured right after the plugin's own cell, each
	// time, so that the machine's drift falls on both sides of the ratio.
	kvOps := map[string]func(*rand.Rand) (string, string, string){
		"read": func(r *rand.Rand) (string, string, string) {
			return "GET", fmt.Sprintf("/v1/kv-ext/key-%05d", r.Intn(1000)), ""
		},
		"write": func(r *rand.Rand) (string, string, string) {
			return "POST", fmt.Sprintf("/v1/kv-ext/key-%05d", r.Intn(1000)), `{"value":"y"}`
		},
	}

	fmt.Printf("%d clients, %v per measurement, Vault dev server on %s\n\n", *clients, *duration, v.Addr)
	fmt.Printf("%-7s %-6s %28s %28s %8s\n", "N", "op", "plugin ops/s p50/p99 ms", "built-in ops/s p50/p99 ms", "ratio")
	filled := 0
	for _, field := range strings.Split(*sizes, ",") {
		if field == "" {
			continue // -sizes "": the hosting tables only
		}
		n, err := strconv.Atoi(field)
		if err != nil {
			t.Fatalf("bad size %q", field)
		}
		for _, prefix := range []string{"/v1/runtimes/catalog/container/", "/v1/sys/plugins/runtimes/catalog/container/"} {
			b.fillRange(filled, n, func(i int) (string, string, string) {
				return "POST", fmt.Sprintf("%srt-%05d", prefix, i), `{"oci_runtime":"runc","cpu_nanos":10000000}`
			})
		}
		filled = n
		idleRSS := pluginRSS(t)

		for _, op := range []struct {
			name    string
			plugin  func(*rand.Rand) (string, string, string)
			builtin func(*rand.Rand) (string, string, string)
		}{
			{name: "read",
				plugin: func(r *rand.Rand) (string, string, string) {
					return "GET", fmt.Sprintf("/v1/runtimes/catalog/container/rt-%05d", r.Intn(n)), ""
				},
				builtin: func(r *rand.Rand) (string, string, string) {
					return "GET", fmt.Sprintf("/v1/sys/plugins/runtimes/catalog/container/rt-%05d", r.Intn(n)), ""
				}},
			{name: "write",
				plugin: func(r *rand.Rand) (string, string, string) {
					return "POST", fmt.Sprintf("/v1/runtimes/catalog/container/rt-%05d", r.Intn(n)), `{"oci_runtime":"runc","cpu_nanos":20000000}`
				},
				builtin: func(r *rand.Rand) (string, string, string) {
					return "POST", fmt.Sprintf("/v1/sys/plugins/runtimes/catalog/container/rt-%05d", r.Intn(n)), `{"oci_runtime":"runc","cpu_nanos":20000000}`
				}},
			{name: "list",
				plugin:  func(*rand.Rand) (string, string, string) { return "LIST", "/v1/runtimes/catalog", "" },
				builtin: func(*rand.Rand) (string, string, string) { return "GET", "/v1/sys/plugins/runtimes/catalog", "" }},
		} {
			var profiled chan struct{}
			if *profile != "" && op.name == "list" && field == sizesLast(*sizes) {
				profiled = b.profileVault(*profile)
			}
			p := b.measure(op.plugin)
			if profiled != nil {
				<-profiled
			}
			var kv result
			if kvOp := kvOps[op.name]; *kvPlugin != "" && kvOp != nil {
				kv = b.measure(kvOp)
			}
			var plain result
			var afterGzipRSS float64
			if op.name == "list" {
				afterGzipRSS = pluginRSS(t)
				plain = b.measureWith(b.plain, op.plugin)
			}
			bi := b.measure(op.builtin)
			name := op.name
			if op.name == "list" {
				name = "list gz"
			}
			fmt.Printf("%-7d %-7s %27s %28s %7.2fx\n", n, name, p, bi, p.rate()/bi.rate())
			if plain.ops > 0 {
				fmt.Printf("%-7d %-7s %27s %28s %7.2fx  (no Accept-Encoding, as plain curl)\n", n, "list", plain, "", plain.rate()/bi.rate())
				fmt.Printf("%-7d plugin RSS %.1f MiB right after the gzip lists, %.1f MiB after the plain ones\n", n, afterGzipRSS/1024/1024, pluginRSS(t)/1024/1024)
			}
			if kv.ops > 0 {
				fmt.Printf("%-7s %-6s %28s %28s %7.2fx  (plugin %s / kv external %s)\n", "", "", "", kv, p.rate()/kv.rate(), op.name, op.name)
			}
		}
		fmt.Printf("%-7d plugin RSS %.1f MiB with the catalog loaded, %.1f MiB after the load above\n", n, idleRSS/1024/1024, pluginRSS(t)/1024/1024)
		fmt.Printf("%-7d first read after a plugin reload: %.0f ms (loads the index from storage)\n\n", n, ms(b.coldRead(t, v)))
	}
	onVault, onBao := strings.Contains(*servers, "vault"), strings.Contains(*servers, "openbao")
	if onBao && os.Getenv("BAO_BINARY") == "" {
		fmt.Println("no OpenBao ($BAO_BINARY unset: scripts/build-openbao.sh gives one): its hosting table is left out")
		onBao = false
	}
	if *hosting && *kvPlugin != "" {
		if onVault {
			b.hostingBench(t, v, true)
		}
		if onBao {
			// One server at a time on the machine's cores.
			v.Stop(t)
			b.onOpenBao(t, *kvPlugin)
		}
	}
	if *pods {
		if missing := podsMissing(*kvPlugin); missing != "" {
			fmt.Printf("no pod rows: they need %s; `make bench` as root sets it all (-pods=false leaves them out without this line)\n", missing)
		} else {
			// One server at a time on the machine's cores: the pods' own.
			v.Stop(t)
			b.podsBench(t, *kvPlugin)
		}
	}
	if len(b.failures) > 0 {
		t.Fatalf("failed requests in %d measurements:\n%s", len(b.failures), strings.Join(b.failures, "\n"))
	}
}

// onOpenBao runs the hosting tables on an OpenBao dev server: hosted kv
// beside the same kv as a plain external plugin (OpenBao has no
// containerized plugins of its own to compare with).
func (b *bench) onOpenBao(t *vaulttest.Program, kvPlugin string) {
	bao := vaulttest.OpenBao.StartDev(t, "runtimes", kvPlugin)
	bao.MustRun(t, "secrets", "enable", "-path=kv-ext", filepath.Base(kvPlugin))
	fmt.Printf("OpenBao dev server on %s\n", bao.Addr)
	ob := *b
	ob.addr, ob.token, ob.failures = bao.Addr, bao.Token, nil
	ob.hostingBench(t, bao, true)
	b.failures = append(b.failures, ob.failures...)
	bao.Stop(t) // one server at a time: the pod rows start their own
}

func sizesLast(sizes string) string {
	all := strings.Split(sizes, ",")
	return all[len(all)-1]
}

// profileVault records Vault's CPU profile for most of one measurement.
func (b *bench) profileVault(file string) chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		seconds := int(b.duration.Seconds()) - 1
		if seconds < 1 {
			seconds = 1
		}
		req, _ := http.NewRequest("GET", fmt.Sprintf("%s/v1/sys/pprof/profile?seconds=%d", b.addr, seconds), nil)
		req.Header.Set("X-Vault-Token", b.token)
		resp, err := b.http.Do(req)
		if err != nil {
			fmt.Fprintln(os.Stderr, "profile:", err)
			return
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		if err := os.WriteFile(file, data, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "profile:", err)
		}
	}()
	return done
}

// coldRead reloads the plugin, so its index is empty, and times the first
// read, which loads the whole catalog from storage.
func (b *bench) coldRead(t vaulttest.T, v *vaulttest.Server) time.Duration {
	v.MustRun(t, "write", "sys/plugins/reload/backend", "plugin="+vaulttest.PluginName)
	start := time.Now()
	if err := b.do("GET", "/v1/runtimes/catalog/container/rt-00000", ""); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

type bench struct {
	t           *vaulttest.Program // a failure stops Vault before the program exits
	addr, token string
	clients     int
	duration    time.Duration
	http        *http.Client
	plain       *http.Client
	failures    []string // of every measurement: the run fails if any
}

func (b *bench) do(method, path, body string) error { return b.doWith(b.http, method, path, body) }

func (b *bench) doWith(client *http.Client, method, path, body string) error {
	req, err := http.NewRequest(method, b.addr+path, bytes.NewBufferString(body))
	if err != nil {
		return err
	}
	req.Header.Set("X-Vault-Token", b.token)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: HTTP %d", method, path, resp.StatusCode)
	}
	return nil
}

func (b *bench) fill(n int, req func(i int) (string, string, string)) { b.fillRange(0, n, req) }

// fillRange sends req(i) for i in [from, to) from all clients at once.
func (b *bench) fillRange(from, to int, req func(i int) (string, string, string)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for c := 0; c < b.clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := b.do(req(i)); err != nil {
					b.t.Fatal(err)
				}
			}
		}()
	}
	for i := from; i < to; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}

type result struct {
	ops       int
	failed    int // answers not 2xx, and requests without an answer
	elapsed   time.Duration
	p50, p99  time.Duration
	firstErr  error
	latencies []time.Duration // sorted
}

func (r result) rate() float64 { return float64(r.ops) / r.elapsed.Seconds() }

// merge is r and o as one measurement: their requests, time and failures
// added up, the percentiles of all their latencies.
func (r result) merge(o result) result {
	all := append(append([]time.Duration(nil), r.latencies...), o.latencies...)
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	m := result{ops: len(all), failed: r.failed + o.failed, elapsed: r.elapsed + o.elapsed, firstErr: r.firstErr, latencies: all}
	if m.firstErr == nil {
		m.firstErr = o.firstErr
	}
	if len(all) > 0 {
		m.p50, m.p99 = all[len(all)/2], all[len(all)*99/100]
	}
	return m
}

func (r result) String() string {
	return fmt.Sprintf("%9.1f %7.2f/%-8.2f", r.rate(), ms(r.p50), ms(r.p99))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// measure runs req from every client for the duration and collects latencies.
func (b *bench) measure(req func(*rand.Rand) (string, string, string)) result {
	return b.measureWith(b.http, req)
}

func (b *bench) measureWith(client *http.Client, req func(*rand.Rand) (string, string, string)) result {
	deadline := time.Now().Add(b.duration)
	began := time.Now()
	latencies := make([][]time.Duration, b.clients)
	failed := make([]int, b.clients)
	firstErr := make([]error, b.clients)
	var wg sync.WaitGroup
	for c := 0; c < b.clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			r := rand.New(rand.NewSource(int64(c)))
			for time.Now().Before(deadline) {
				start := time.Now()
				method, path, body := req(r)
				// A failure is counted, not fatal: every row says how many it
				// had, and the run fails at its end (bench.failures).
				if err := b.doWith(client, method, path, body); err != nil {
					failed[c]++
					if firstErr[c] == nil {
						firstErr[c] = err
					}
				}
				latencies[c] = append(latencies[c], time.Since(start))
			}
		}(c)
	}
	wg.Wait()
	var all []time.Duration
	for _, l := range latencies {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	r := result{ops: len(all), elapsed: time.Since(began), p50: all[len(all)/2], p99: all[len(all)*99/100], latencies: all}
	for c := range failed {
		r.failed += failed[c]
		if r.firstErr == nil {
			r.firstErr = firstErr[c]
		}
	}
	if r.failed > 0 {
		b.failures = append(b.failures, fmt.Sprintf("%d of %d requests failed, the first: %v", r.failed, r.ops, r.firstErr))
	}
	return r
}

// pluginRSS is the resident memory of the plugin's process, in bytes.
func pluginRSS(t vaulttest.T) float64 {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		cmdline, err := os.ReadFile(p)
		// The plugin's own executable, not Vault (whose path may hold the name).
		if err != nil || filepath.Base(strings.SplitN(string(cmdline), "\x00", 2)[0]) != vaulttest.PluginName {
			continue
		}
		status, err := os.ReadFile(filepath.Join(filepath.Dir(p), "status"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
				return kb * 1024
			}
		}
	}
	t.Fatal("plugin process not found")
	return 0
}
