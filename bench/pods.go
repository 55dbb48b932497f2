package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/k8stest"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/testimage"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime/kubernetes"
)

// podTarget is the pod's target against the same image hosted on Docker:
// 0.8x of its throughput or better, so at most 1/0.8 of its times. It is
// printed beside the ratios, never asserted: the machine is shared.
const podTarget = 0.8

// podKVImage is the name the kv image has on the test node (imported there,
// never pulled); its tag is the Docker image's, testimage.KVTag.
const podKVImage = "localhost/rc-kv-plugin"

// coldTrials is how many new mounts each side gets for "new mount to its
// first read", in turn, the median printed: one start is at the mercy of
// whatever else the machine does in that second.
const coldTrials = 3

// podsMissing says what the pod rows lack on this machine, or "" when they
// can run. It is asked before k8stest.Start, which in a program (not a test)
// would end the whole run where a test would skip.
func podsMissing(kvPlugin string) string {
	switch {
	case kvPlugin == "":
		return "-kv-plugin (scripts/build-kv-plugin.sh)"
	case os.Geteuid() != 0:
		return "root"
	case os.Getenv("RC_K8S_BIN") == "":
		return "$RC_K8S_BIN (RC_K8S_BIN=$(scripts/build-k8s.sh))"
	case os.Getenv("RC_ACC") == "" && os.Getenv("CI") != "true":
		return "RC_ACC=1"
	}
	return ""
}

// podsBench measures HashiCorp's kv hosted in a pod of the test Kubernetes
// node beside the same kv binary hosted on Docker, with the same OCI runtime
// (runc, then runsc), on one Vault dev server. The server, and so this
// plugin, runs in the node's network namespace, where the pod IPs are; the
// Docker Engine is reached there as anywhere, through its Unix socket, and
// the load generator reaches the server through the node's forwarder on the
// host's 127.0.0.1 (both sides alike). The node, the server and the
// containers are stopped when it returns, and by the program's cleanups
// should it fail.
func (b *bench) podsBench(t *vaulttest.Program, kvPlugin string) {
	n := k8stest.Start(t)
	defer n.Stop(t)
	// The same kv binary on both engines: on the node FROM scratch with
	// the binary at /vault-plugin-secrets-kv (the command the pod's carrier
	// starts), on Docker FROM scratch with it as the entrypoint.
	podKVID := n.Image(t, kvPlugin, podKVImage+":"+testimage.KVTag)
	// The carrier, under the name the engine uses by default.
	n.Image(t, k8stest.BuildStatic(t, "runtime/kubernetes/carrier"), kubernetes.DefaultCarrierImage)
	docker := testimage.Docker(t)
	dockerKVID := testimage.BuildKV(t, docker)

	v := vaulttest.Vault.StartDevIn(t, n.Netns, filepath.Join(n.Bin, "rc-k8s-forward"), "runtimes")
	// The server first: it would start again a container removed under it.
	stop := func() { v.Stop(t); removeContainers(docker, v.ClusterID) }
	t.Cleanup(stop)
	defer stop()
	fmt.Printf("pods: Vault dev server on %s in the test node's network namespace %s\n", v.Addr, n.Netns)

	sides := []side{
		{name: "hosted kv in a pod", key: "pod", engine: []string{"engine=kubernetes://default" + n.Kubeconfig},
			image: []string{"oci_image=" + podKVImage, "sha256=" + podKVID, "command=/" + filepath.Base(kvPlugin)}},
		{name: "hosted kv on Docker", key: "docker",
			image: []string{"oci_image=" + testimage.KVName, "sha256=" + dockerKVID}},
	}
	// Its own copy of the bench, on this server; its failed requests join
	// the run's, which fails at its end if there are any.
	pb := *b
	pb.addr, pb.token, pb.failures = v.Addr, v.Token, nil
	for _, oci := range []string{"runc", "runsc"} {
		pb.podTable(t, v, sides, oci)
	}
	b.failures = append(b.failures, pb.failures...)
}

// side is one way to host the kv image: the runtime's fields beside
// oci_runtime (its engine), and the plugin's beside runtime and version.
type side struct {
	name, key     string // key names its runtimes, plugins and mounts
	engine, image []string
}

// register writes a runtime and a plugin, both named name, for s under oci,
// with nothing else set: no limits on either side, so that neither engine
// is held back by its own translation of a limit.
func (s side) register(t *vaulttest.Program, v *vaulttest.Server, name, oci string) {
	v.MustRun(t, append([]string{"write", "runtimes/catalog/container/" + name, "oci_runtime=" + oci}, s.engine...)...)
	v.MustRun(t, append([]string{"write", "runtimes/plugins/catalog/secret/" + name, "runtime=" + name,
		"version=" + testimage.KVVersion}, s.image...)...)
}

// podTable measures the sides' hosted kv under oci, side by side (the
// first side's over the second's in the ratios), then a new mount of each
// to its first read, and prints each against podTarget.
func (b *bench) podTable(t *vaulttest.Program, v *vaulttest.Server, sides []side, oci string) {
	// kv version 1 as this plugin hosts it by default (no lease per read):
	// both sides are hosted by this plugin, and a lease would add the same
	// storage write of Vault's to both, hiding the engines' difference.
	var mounts []mount
	for _, s := range sides {
		name := s.key + "-" + oci
		s.register(t, v, name, oci)
		v.MustRun(t, "write", "runtimes/hosted/"+name, "plugin="+name)
		mounts = append(mounts, mount{name: s.name, prefix: "/v1/runtimes/mounts/" + name + "/"})
	}
	fmt.Printf("%s: kv v1 (HashiCorp's %s, the same binary), OCI runtime %s, in a pod of the test node beside on Docker, %d rounds each\n",
		v.Kind.CLI, testimage.KVVersion, oci, benchRounds)
	cells := b.sideBySide(mounts, "pod / Docker")
	// Deleted before what follows: their containers and sandboxes would
	// hold memory and CPU under the new mounts' starts and the next table.
	for _, s := range sides {
		v.MustRun(t, "delete", "runtimes/hosted/"+s.key+"-"+oci)
	}

	// New mounts on new containers, to the first answered read, the sides
	// in turn: each a registration of its own, so that nothing is shared
	// with another mount (a plugin's mounts share its container).
	colds := make([][]time.Duration, len(sides))
	for i := 0; i < coldTrials; i++ {
		for j, s := range sides {
			name := fmt.Sprintf("%s-cold-%s-%d", s.key, oci, i)
			s.register(t, v, name, oci)
			colds[j] = append(colds[j], b.newMountToRead(t, v, name, name))
			v.MustRun(t, "delete", "runtimes/hosted/"+name)
		}
	}

	// The verdicts: throughput as pod / Docker (at least podTarget), times
	// as pod / Docker (at most 1/podTarget).
	fmt.Printf("pod / Docker under %s, target: the pod at %.2fx of Docker-hosted or better (%.2fx or more of its ops/s, %.2fx or less of its times); not asserted\n",
		oci, podTarget, podTarget, 1/podTarget)
	for _, c := range cells {
		pod, dock := c.results[0], c.results[1]
		if c.clients > 1 {
			ratio := pod.rate() / dock.rate()
			fmt.Printf("  %-5s %d clients: %8.1f / %8.1f ops/s = %5.2fx  (p50 %.2f / %.2f ms = %.2fx)  %s\n", c.op, c.clients,
				pod.rate(), dock.rate(), ratio, ms(pod.p50), ms(dock.p50), float64(pod.p50)/float64(dock.p50), verdict(ratio >= podTarget))
		} else {
			ratio := float64(pod.p50) / float64(dock.p50)
			fmt.Printf("  %-5s 1 client:  p50 %.2f / %.2f ms = %5.2fx  %s\n", c.op, ms(pod.p50), ms(dock.p50), ratio, verdict(ratio <= 1/podTarget))
		}
	}
	pod, dock := median(colds[0]), median(colds[1])
	ratio := float64(pod) / float64(dock)
	fmt.Printf("  new mount to its first answered read, median of %d: %.0f / %.0f ms = %.2fx  %s (pod: %s; Docker: %s)\n\n",
		coldTrials, ms(pod), ms(dock), ratio, verdict(ratio <= 1/podTarget), msList(colds[0]), msList(colds[1]))
}

func verdict(met bool) string {
	if met {
		return "target met"
	}
	return "target NOT met"
}

// msList is the durations in milliseconds, in the order they were taken.
func msList(ds []time.Duration) string {
	s := ""
	for i, d := range ds {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%.0f", ms(d))
	}
	return s
}
