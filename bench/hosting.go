package main

import (
	"context"
	"fmt"
	"math/rand"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/testimage"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// hostingBench measures, in one server and side by side, HashiCorp's kv
// plugin hosted by this plugin, the same image run by Vault's own
// containerized plugin support with the same OCI runtime (on Vault: OpenBao
// has none), and kv as a plain external plugin (kv-ext, when given); then
// how long a new mount takes to its first answered read, and a killed
// container to the next.
func (b *bench) hostingBench(t *vaulttest.Program, v *vaulttest.Server, external bool) {
	docker := testimage.Docker(t)
	kvID := testimage.BuildKV(t, docker)
	// The server first: it would start again a container removed under it.
	t.Cleanup(func() { v.Stop(t); removeContainers(docker, v.ClusterID) })
	v.MustRun(t, "secrets", "enable", "-path="+noCacheMount, vaulttest.PluginName)
	v.MustRun(t, "write", noCacheMount+"/config", "disable_hosted_storage_cache=true")
	for _, oci := range []string{"runc", "runsc"} {
		b.hostingTable(t, v, docker, kvID, oci, external)
	}
}

func (b *bench) hostingTable(t *vaulttest.Program, v *vaulttest.Server, docker *client.Client, kvID, oci string, external bool) {
	// OpenBao runs no plugin in a container of its own: there, hosted kv
	// stands beside kv as a plain external plugin only.
	containerized := !v.Kind.IsOpenBao()
	// Ours, on the mount measured and on one with its hosted storage cache
	// off (noCacheMount): a runtime, the plugin, a hosted mount.
	//
	// kv version 1 everywhere, each read registering a lease: Vault's own
	// containerized kv can be nothing else. Its no-lease rule for kv is
	// keyed on the plugin name "kv", which an external plugin cannot take
	// ("cannot select non-builtin version"), and for any other name Vault
	// reads the version=2 option as a plugin version and refuses it. The
	// hosted kv leases only with leased_passthrough=true (its other answers
	// are no lease, whatever its name): set, so both sides lease alike.
	for _, ours := range []string{"runtimes", noCacheMount} {
		v.MustRun(t, "write", ours+"/catalog/container/bench-"+oci, "oci_runtime="+oci)
		v.MustRun(t, "write", ours+"/plugins/catalog/secret/kvb-"+oci, "oci_image="+testimage.KVName,
			"version="+testimage.KVVersion, "sha256="+kvID, "runtime=bench-"+oci)
		v.MustRun(t, "write", ours+"/hosted/kv-"+oci, "plugin=kvb-"+oci, "options=leased_passthrough=true")
	}
	mounts := []mount{{name: "hosted kv (this plugin)", prefix: "/v1/runtimes/mounts/kv-" + oci + "/"}}
	hexID := strings.TrimPrefix(kvID, "sha256:")
	if containerized {
		// Vault's own: the same image and OCI runtime through sys/plugins.
		v.MustRun(t, "plugin", "runtime", "register", "-type=container", "-oci_runtime="+oci, "bench-"+oci)
		v.MustRun(t, "plugin", "register", "-sha256="+hexID, "-oci_image="+testimage.KVName, "-runtime=bench-"+oci,
			"-version="+testimage.KVVersion, "secret", "kv-container-"+oci)
		v.MustRun(t, "secrets", "enable", "-path=kv-cont-"+oci, "kv-container-"+oci)
		mounts = append(mounts, mount{name: "Vault's containerized kv", prefix: "/v1/kv-cont-" + oci + "/"})
	}
	if external {
		mounts = append(mounts, mount{name: "kv as an external plugin", prefix: "/v1/kv-ext/"})
	}
	mounts = append(mounts, mount{name: "hosted kv, cache off", prefix: "/v1/" + noCacheMount + "/mounts/kv-" + oci + "/"})
	ratioLabel := ""
	if containerized {
		ratioLabel = "hosted / Vault's containerized"
	} else if external {
		ratioLabel = "hosted / external"
	}
	fmt.Printf("%s: kv v1 (HashiCorp's v0.25.0, one image, OCI runtime %s, a lease per read everywhere), %d rounds each\n", v.Kind.CLI, oci, benchRounds)
	b.sideBySide(mounts, ratioLabel)

	// A new mount on a new container, to its first answered read: a
	// registration of its own, so nothing is shared with the mounts above.
	v.MustRun(t, "write", "runtimes/catalog/container/cold-"+oci, "oci_runtime="+oci, "cpu_nanos=2000000000")
	v.MustRun(t, "write", "runtimes/plugins/catalog/secret/kv-cold-"+oci, "oci_image="+testimage.KVName,
		"version="+testimage.KVVersion, "sha256="+kvID, "runtime=cold-"+oci)
	hostedCold := b.newMountToRead(t, v, "cold-"+oci, "kv-cold-"+oci)
	if containerized {
		v.MustRun(t, "plugin", "register", "-sha256="+hexID, "-oci_image="+testimage.KVName, "-runtime=bench-"+oci,
			"-version="+testimage.KVVersion, "secret", "kv-container-cold-"+oci)
		vaultCold := timed(func() {
			v.MustRun(t, "secrets", "enable", "-path=kv-cold-"+oci, "kv-container-cold-"+oci)
			b.until(t, "GET", "/v1/kv-cold-"+oci+"/nothing")
		})
		fmt.Printf("new mount to its first answered read: hosted %.0f ms, Vault's containerized %.0f ms\n", ms(hostedCold), ms(vaultCold))
	} else {
		fmt.Printf("new mount to its first answered read: hosted %.0f ms\n", ms(hostedCold))
	}

	// What monitoring polls: a hosted mount's read (its state and health,
	// the figures from its engine's newest sample) beside a stored read of
	// the catalog's, one client, side by side, for a round's time.
	manyClients, duration := b.clients, b.duration
	defer func() { b.clients, b.duration = manyClients, duration }()
	b.clients, b.duration = 1, duration/benchRounds
	status := b.measure(func(*rand.Rand) (string, string, string) { return "GET", "/v1/runtimes/hosted/kv-" + oci, "" })
	stored := b.measure(func(*rand.Rand) (string, string, string) {
		return "GET", "/v1/runtimes/catalog/container/bench-" + oci, ""
	})
	fmt.Printf("GET hosted/NAME (state and health) p50 %.2f ms (%d failed), a stored read p50 %.2f ms: %.2fx\n",
		ms(status.p50), status.failed, ms(stored.p50), float64(status.p50)/float64(stored.p50))

	// docker kill of the container, to the next answered read.
	var st struct {
		Data struct {
			ContainerID string `json:"container_id"`
		} `json:"data"`
	}
	// Five kills on each side, alternating; the medians, and every failed
	// request counted.
	var hostedKills, vaultKills []time.Duration
	hostedFailed, vaultFailed := 0, 0
	for i := 0; i < 5; i++ {
		v.MustJSON(t, &st, "read", "runtimes/hosted/kv-"+oci)
		d, failed := b.killAndRead(t, st.Data.ContainerID, "/v1/runtimes/mounts/kv-"+oci+"/key-00001")
		hostedKills, hostedFailed = append(hostedKills, d), hostedFailed+failed
		if containerized {
			d, failed = b.killAndRead(t, vaultContainer(t, docker, "kv-container-"+oci), "/v1/kv-cont-"+oci+"/key-00001")
			vaultKills, vaultFailed = append(vaultKills, d), vaultFailed+failed
		}
		time.Sleep(crashLoopPause) // stay clear of the host's crash-loop rule (3 starts a minute)
	}
	fmt.Printf("docker kill to the next answered read, median of 5: hosted %.0f ms (%d failed requests)", ms(median(hostedKills)), hostedFailed)
	if containerized {
		fmt.Printf(", Vault's containerized %.0f ms (%d failed requests)", ms(median(vaultKills)), vaultFailed)
	}
	fmt.Print("\n\n")
}

// mount is one row of the hosting table: requests go to prefix.
type mount struct{ name, prefix string }

// cell is one operation at one number of clients: a result per mount, in
// the order of the mounts.
type cell struct {
	op      string
	clients int
	results []result
}

// sideBySide fills 1,000 keys on each mount, then measures reads and writes
// of them at b.clients (throughput) and at one client (the latency of a lone
// request), and prints a row per mount. When ratioLabel is set, the second
// mount's rows get the first's throughput over its own (and at one client
// the p50s'), under that label. Every failed request is counted in its row
// and in b.failures, which fails the run.
func (b *bench) sideBySide(mounts []mount, ratioLabel string) []cell {
	for _, m := range mounts {
		b.fill(1000, func(i int) (string, string, string) {
			return "POST", fmt.Sprintf("%skey-%05d", m.prefix, i), `{"value":"x"}`
		})
	}
	fmt.Printf("%-6s %-7s %-26s %28s %7s %s\n", "op", "clients", "mount", "ops/s p50/p99 ms", "failed", ratioLabel+" (ops/s; p50 at 1 client)")
	manyClients, duration := b.clients, b.duration
	defer func() { b.clients, b.duration = manyClients, duration }()
	b.duration = duration / benchRounds
	var cells []cell
	for _, clients := range []int{manyClients, 1} {
		b.clients = clients
		for _, op := range []struct{ name, method, body string }{{"read", "GET", ""}, {"write", "POST", `{"value":"y"}`}} {
			// The mounts in turn, round after round: a slow moment of the
			// machine falls on all of them, not on one row.
			results := make([]result, len(mounts))
			for round := 0; round < benchRounds; round++ {
				for i, m := range mounts {
					prefix := m.prefix
					results[i] = results[i].merge(b.measure(func(r *rand.Rand) (string, string, string) {
						return op.method, fmt.Sprintf("%skey-%05d", prefix, r.Intn(1000)), op.body
					}))
				}
			}
			for i, m := range mounts {
				r, ratio := results[i], ""
				if i == 1 && ratioLabel != "" {
					ratio = fmt.Sprintf("%.2fx", results[0].rate()/r.rate())
					if clients == 1 {
						ratio += fmt.Sprintf(" p50 %.2fx", float64(results[0].p50)/float64(r.p50))
					}
				}
				fmt.Printf("%-6s %-7d %-26s %28s %7d %s\n", op.name, clients, m.name, r, r.failed, ratio)
			}
			cells = append(cells, cell{op: op.name, clients: clients, results: results})
		}
	}
	return cells
}

// newMountToRead times a new hosted mount NAME of plugin, from its write to
// its first answered read.
func (b *bench) newMountToRead(t *vaulttest.Program, v *vaulttest.Server, name, plugin string) time.Duration {
	return timed(func() {
		v.MustRun(t, "write", "runtimes/hosted/"+name, "plugin="+plugin)
		b.until(t, "GET", "/v1/runtimes/mounts/"+name+"/nothing")
	})
}

// benchRounds is how many turns each row of the hosting table gets, for a
// third of the duration each.
const benchRounds = 3

// noCacheMount is a second mount of this plugin, its hosted storage cache
// turned off: hosted kv there is the table's row without the cache.
const noCacheMount = "runtimes-nocache"

// crashLoopPause spaces the kills: the host fails a mount started more than
// three times within a minute, on purpose.
const crashLoopPause = 21 * time.Second

func median(ds []time.Duration) time.Duration {
	sorted := append([]time.Duration(nil), ds...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	return sorted[len(sorted)/2]
}

func timed(f func()) time.Duration {
	began := time.Now()
	f()
	return time.Since(began)
}

// until sends a request until it is answered without a server error (a
// 404 for a missing key is an answer).
func (b *bench) until(t *vaulttest.Program, method, path string) int {
	failed := 0
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := b.do(method, path, ""); err == nil || strings.Contains(err.Error(), " 404") {
			return failed
		}
		failed++
		if time.Now().After(deadline) {
			t.Fatalf("%s %s never answered", method, path)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (b *bench) killAndRead(t *vaulttest.Program, id, path string) (time.Duration, int) {
	if out, err := exec.Command("docker", "kill", id).CombinedOutput(); err != nil {
		t.Fatalf("docker kill %s: %v %s", id, err, out)
	}
	began := time.Now()
	failed := b.until(t, "GET", path)
	return time.Since(began), failed
}

// vaultContainer finds the container Vault itself runs a plugin in, by the
// labels Vault gives it.
func vaultContainer(t *vaulttest.Program, docker *client.Client, plugin string) string {
	list, err := docker.ContainerList(context.Background(), container.ListOptions{
		Filters: filters.NewArgs(filters.Arg("label", "com.hashicorp.vault.plugin.name="+plugin)),
	})
	if err != nil || len(list) == 0 {
		t.Fatalf("no container of Vault's for %s (%v)", plugin, err)
	}
	return list[0].ID
}

// removeContainers removes what a failed run may leave: the plugin
// containers of the server whose cluster ID is given, this project's and
// Vault's own (both carry the label), and no other's: the Docker Engine may
// be shared with other runs.
func removeContainers(docker *client.Client, clusterID string) {
	list, _ := docker.ContainerList(context.Background(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", runtime.LabelClusterID+"="+clusterID))})
	for _, c := range list {
		docker.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true})
	}
}
