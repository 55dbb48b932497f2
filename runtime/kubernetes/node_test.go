package kubernetes_test

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"

	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/k8stest"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime/kubernetes"
)

// The test on the real test node runs in two processes: this one starts the
// node (in the host's namespaces) and imports the images, then runs itself
// again inside the node's network namespace, where the pod IPs are (the
// machine's traffic rule: nothing leaves 127.0.0.1 and the test's own
// namespaces). A Go process cannot move all its threads into a namespace,
// and go-plugin dials from any of them, so the whole process is started
// there (nsenter --net, which leaves /sys and the mounts alone).
const (
	envInNode  = "RC_K8S_ENGINE_TEST_IN_NODE"
	kvRef      = "localhost/kv-plugin:0.25.0"
	carrierRef = "localhost/rc-carrier:" + kubernetes.CarrierVersion
	probeRef   = "localhost/rc-probe-plugin:0.2.0"
)

func TestOnNode(t *testing.T) {
	if os.Getenv(envInNode) != "" {
		inNode(t)
		return
	}
	n := k8stest.Start(t)
	kv := os.Getenv("KV_PLUGIN_BINARY")
	if kv == "" {
		vaulttest.RequireReal(t, "HashiCorp's kv plugin ($KV_PLUGIN_BINARY)",
			"run `make test`, or export KV_PLUGIN_BINARY=$(scripts/build-hashicorp-plugin.sh kv)")
	}
	kvID := importImage(t, n, kv, kvRef)
	importImage(t, n, k8stest.BuildStatic(t, "runtime/kubernetes/carrier"), carrierRef)
	importImage(t, n, k8stest.BuildStatic(t, "internal/probeplugin"), probeRef)

	// The same -run, so that a subtest can be run alone.
	cmd := exec.Command("nsenter", "--net="+n.Netns, os.Args[0], "-test.run="+flag.Lookup("test.run").Value.String(), "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), envInNode+"=1", "KUBECONFIG="+n.Kubeconfig, "RC_K8S_KV_ID="+kvID)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := bufio.NewScanner(out)
	for s.Scan() {
		t.Log(s.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the test inside the node's network namespace: %v", err)
	}
}

// importImage makes an image of the static binary (scripts/k8s/image.sh),
// imports it into the node's containerd and returns its ID (the config's
// digest, Vault's sha256).
func importImage(t *testing.T, n *k8stest.Node, binary, ref string) string {
	t.Helper()
	tarPath := filepath.Join(vaulttest.ShortTempDir(t), "image.tar")
	root, _ := filepath.Abs("../..")
	if out, err := exec.Command(filepath.Join(root, "scripts", "k8s", "image.sh"), binary, ref, tarPath).CombinedOutput(); err != nil {
		t.Fatalf("image.sh: %v\n%s", err, out)
	}
	if out, err := exec.Command(filepath.Join(n.Bin, "ctr"), "-a", n.Containerd, "-n", "k8s.io", "images", "import", tarPath).CombinedOutput(); err != nil {
		t.Fatalf("importing %s: %v\n%s", ref, err, out)
	}
	f, err := os.Open(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := tar.NewReader(f)
	for {
		h, err := r.Next()
		if err != nil {
			t.Fatalf("no manifest.json in %s: %v", tarPath, err)
		}
		if filepath.Clean(h.Name) == "manifest.json" {
			var m []struct{ Config string }
			if err := json.NewDecoder(r).Decode(&m); err != nil || len(m) != 1 {
				t.Fatalf("manifest.json: %v", err)
			}
			return strings.TrimSuffix(m[0].Config, ".json")
		}
	}
}

func inNode(t *testing.T) {
	kubeconfig := os.Getenv("KUBECONFIG")
	// The carrier under a name of the test's, as an operator names theirs.
	engine, err := kubernetes.New("kubernetes://default" + kubeconfig + "?carrier_image=" + carrierRef)
	if err != nil {
		t.Fatal(err)
	}
	config, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	client := k8s.NewForConfigOrDie(config)
	noPodLeft := func(t *testing.T) {
		t.Helper()
		vaulttest.Eventually(t, 30*time.Second, "no plugin pod left", func() error {
			list, err := client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: runtime.LabelManagedBy})
			if err != nil {
				return err
			}
			if len(list.Items) > 0 {
				return errors.New("left: " + list.Items[0].Name)
			}
			return nil
		})
	}
	kv := runtime.Plugin{Name: "kv", Type: "secret", Image: "localhost/kv-plugin", Version: "v0.25.0", Command: "/vault-plugin-secrets-kv"}
	options := runtime.Options{ClusterID: "k8s-engine-test", VaultVersion: "1.21.0", StartTimeout: time.Minute,
		Logger: hclog.New(&hclog.LoggerOptions{Name: "engine", Level: hclog.Debug, Output: os.Stderr})}

	facts, err := engine.Facts(context.Background())
	if err != nil || !facts.Runs("runc") || !facts.Runs("runsc") {
		t.Fatalf("facts %+v, %v", facts, err)
	}
	for _, oci := range []string{"runc", "runsc"} {
		t.Run("kv under "+oci, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			rt := runtime.Runtime{Name: "rt-" + oci, OCIRuntime: oci, NanoCPUs: 500_000_000, MemoryBytes: 256 << 20, Rootless: true}
			res, err := runtime.Check(ctx, engine, kv, rt, options)
			if err != nil {
				t.Fatal(err)
			}
			if res.PluginVersion != "" { // HashiCorp's kv reports no version of its own
				t.Errorf("plugin version %q", res.PluginVersion)
			}
			t.Logf("kv under %s in pod %s: created %v, running %v later, handshake %v, total %v (stop and removal included)",
				oci, res.ID, res.Created.Round(time.Millisecond), res.Started.Round(time.Millisecond),
				res.Handshake.Round(time.Millisecond), res.Total.Round(time.Millisecond))
			writeAndRead(t, engine, client, kv, rt, options)
			noPodLeft(t)
		})
	}
	t.Run("carrier by an init container", func(t *testing.T) {
		// Clusters before 1.35 (or without image volumes) get the carrier
		// this way; this node gets an image volume unless told.
		initEngine, err := kubernetes.New("kubernetes://default" + kubeconfig + "?carrier_mount=init_container&carrier_image=" + carrierRef)
		if err != nil {
			t.Fatal(err)
		}
		writeAndRead(t, initEngine, client, kv, runtime.Runtime{OCIRuntime: "runsc", Rootless: true}, options)
		noPodLeft(t)
	})
	t.Run("carrier image missing", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		noCarrier, err := kubernetes.New("kubernetes://default" + kubeconfig + "?carrier_image=localhost/no-such-carrier:1")
		if err != nil {
			t.Fatal(err)
		}
		_, err = runtime.Check(ctx, noCarrier, kv, runtime.Runtime{OCIRuntime: "runc"}, options)
		if !errors.Is(err, runtime.ErrImageMissing) || !strings.Contains(err.Error(), "the carrier's image localhost/no-such-carrier:1") {
			t.Fatalf("Check: %v", err)
		}
		t.Logf("%v", err)
		noPodLeft(t)
	})
	t.Run("registered sha256", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		p := kv
		p.SHA256 = os.Getenv("RC_K8S_KV_ID")
		rt := runtime.Runtime{OCIRuntime: "runc"}
		if _, err := runtime.Check(ctx, engine, p, rt, options); err != nil {
			t.Fatalf("the image's own ID: %v", err)
		}
		p.SHA256 = strings.Repeat("0", 64)
		_, err := runtime.Check(ctx, engine, p, rt, options)
		if !errors.Is(err, runtime.ErrSHA256Mismatch) {
			t.Fatalf("another ID: %v", err)
		}
		t.Logf("another sha256: %v", err)
		noPodLeft(t)
	})
	probe := runtime.Plugin{Name: "probe", Type: "secret", Image: "localhost/rc-probe-plugin", Version: "v0.2.0", Command: "/probeplugin"}
	for _, oci := range []string{"runc", "runsc"} {
		t.Run("exits under "+oci, func(t *testing.T) {
			exits(t, engine, client, probe, runtime.Runtime{Name: "rt-" + oci, OCIRuntime: oci, MemoryBytes: 48 << 20}, options)
			noPodLeft(t)
		})
	}
	t.Run("a stranger first", func(t *testing.T) {
		p := probe
		p.Env = []string{"PROBE_HANDSHAKE_DELAY=2s"}                 // the stranger has 2 s to come first
		if exec.Command("ip", "link", "show", "cni0").Run() != nil { // the pods' bridge comes with the first pod
			if _, err := runtime.Check(context.Background(), engine, probe, runtime.Runtime{OCIRuntime: "runc"}, options); err != nil {
				t.Fatal(err)
			}
		}
		strangerFirst(t, kubeconfig, client, p, options)
	})
	t.Run("reap orphans", func(t *testing.T) { reap(t, engine, client) })
	t.Run("preview", func(t *testing.T) {
		preview, err := runtime.PreviewRun(engine, kv, runtime.Runtime{OCIRuntime: "runsc", MemoryBytes: 64 << 20, Rootless: true}, options)
		if err != nil {
			t.Fatal(err)
		}
		// The API server takes the pod a start would make as it is (a dry
		// run), but for the name made at start.
		request, _ := json.Marshal(preview.Request)
		var objs struct {
			Pod *corev1.Pod `json:"pod"`
		}
		if err := json.Unmarshal(request, &objs); err != nil {
			t.Fatal(err)
		}
		objs.Pod.Name, objs.Pod.Labels[kubernetes.LabelPod] = "rc-preview", "rc-preview"
		if _, err := client.CoreV1().Pods("default").Create(context.Background(), objs.Pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
			t.Fatalf("the preview's pod: %v\n%s", err, request)
		}
		// Kubernetes 1.35 has image volumes on by default: the carrier is one.
		if len(objs.Pod.Spec.InitContainers) != 0 || objs.Pod.Spec.Volumes[0].Image == nil {
			t.Errorf("on %s the carrier is to be an image volume: %s", facts.Address, request)
		}
	})
	t.Run("missing image", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		p := kv
		p.Image = "localhost/no-such-plugin"
		began := time.Now()
		_, err := runtime.Check(ctx, engine, p, runtime.Runtime{OCIRuntime: "runc"}, options)
		if !errors.Is(err, runtime.ErrImageMissing) || !strings.Contains(err.Error(), "localhost/no-such-plugin:0.25.0") {
			t.Fatalf("Check: %v", err)
		}
		t.Logf("after %v: %v", time.Since(began).Round(time.Millisecond), err)
		noPodLeft(t)
	})

}

// exits ends the probe plugin's pod three ways (its memory limit, a panic,
// a delete from outside) and reads each end as the host reports it.
func exits(t *testing.T, engine runtime.Engine, client k8s.Interface, p runtime.Plugin, r runtime.Runtime, o runtime.Options) {
	for _, tc := range []struct {
		name   string
		end    func(ctx context.Context, running *runtime.Running, backend logical.Backend, storage logical.Storage)
		reason string
		code   int64
		says   string
	}{
		{"memory limit", func(ctx context.Context, _ *runtime.Running, b logical.Backend, s logical.Storage) {
			b.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "alloc", Data: map[string]any{"mb": 256}, Storage: s})
		}, runtime.ExitMemoryLimit, 137, "probe: allocating"},
		{"panic", func(ctx context.Context, _ *runtime.Running, b logical.Backend, s logical.Storage) {
			b.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "panic", Storage: s})
		}, runtime.ExitPanicked, 2, "panic: probe: asked to panic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			running, backend, storage := startBackend(ctx, t, engine, p, r, o, "m")
			began := time.Now()
			tc.end(ctx, running, backend, storage)
			var exit runtime.Exit
			vaulttest.Eventually(t, time.Minute, "the plugin's exit", func() error {
				var ok bool
				if exit, ok = running.Exit(); !ok {
					return errors.New("not exited")
				}
				return nil
			})
			if exit.Reason != tc.reason || exit.Code != tc.code || !strings.Contains(strings.Join(exit.Output, "\n"), tc.says) {
				t.Fatalf("exit %+v, want reason %s, code %d, output with %q", exit, tc.reason, tc.code, tc.says)
			}
			kills, watched := running.OOMKills()
			t.Logf("%s under %s: exit code %d, reason %s (OOM kills %d, reported %v), %v after it was asked", tc.name, r.OCIRuntime,
				exit.Code, exit.Reason, kills, watched, time.Since(began).Round(time.Millisecond))
		})
	}

	// kubectl delete pod: the pod reads as leaving, and its plugin serves
	// on (its carrier holds the SIGTERM back) until the host closes its
	// session, which ends it then, not at its grace period's end.
	t.Run("deleted from outside", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		running, backend, storage := startBackend(ctx, t, engine, p, r, o, "m")
		if err := client.CoreV1().Pods("default").Delete(ctx, running.ID(), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-running.Leaving():
		case <-ctx.Done():
			t.Fatal("the deleted pod never read as leaving")
		}
		resp, err := backend.HandleRequest(ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "count", Storage: storage})
		if err != nil || fmt.Sprint(resp.Data["count"]) != "1" {
			t.Fatalf("a write to the leaving pod: %v %v", resp, err)
		}
		began := time.Now()
		running.Stop(ctx)
		exit, ok := running.Exit()
		if !ok || (exit.Code != 0 && exit.Code != 128+15) {
			t.Fatalf("after the host's stop: %+v %v, want the plugin's own end (0, or 143 from the SIGTERM passed on)", exit, ok)
		}
		t.Logf("deleted from outside under %s: served while leaving; ended %v after the host's stop, exit code %d",
			r.OCIRuntime, time.Since(began).Round(time.Millisecond), exit.Code)
	})
}

// strangerFirst: connections from another address than the host's reach
// the carrier before the host's, and do not take the plugin's one session:
// the host's start completes and its requests are served. The host is
// admitted only as 10.214.0.1 (its address on the pods' bridge); the
// stranger is 10.214.0.250, added to the bridge for this test (pods have no
// route beyond their subnet, so it must be in it).
const stranger = "10.214.0.250"

func strangerFirst(t *testing.T, kubeconfig string, client k8s.Interface, p runtime.Plugin, o runtime.Options) {
	engine, err := kubernetes.New("kubernetes://default" + kubeconfig + "?carrier_image=" + carrierRef + "&host_addresses=10.214.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "addr", "add", stranger+"/32", "dev", "cni0").CombinedOutput(); err != nil {
		t.Fatalf("adding the stranger's address: %v: %s", err, out)
	}
	defer exec.Command("ip", "addr", "del", stranger+"/32", "dev", "cni0").Run()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	done := make(chan struct{})
	closed := make(chan string, 100)
	go func() {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(stranger)}, Timeout: time.Second}
		for {
			select {
			case <-done:
				close(closed)
				return
			case <-time.After(20 * time.Millisecond):
			}
			list, err := client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: kubernetes.LabelPod})
			if err != nil || len(list.Items) == 0 || list.Items[0].Status.PodIP == "" {
				continue
			}
			conn, err := d.Dial("tcp", net.JoinHostPort(list.Items[0].Status.PodIP, "5599"))
			if err != nil {
				continue
			}
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
			if err == io.EOF {
				closed <- time.Now().Format("15:04:05.000")
			}
		}
	}()
	running, err := runtime.Start(ctx, engine, p, runtime.Runtime{OCIRuntime: "runc"}, o)
	close(done)
	var strangers []string
	for at := range closed {
		strangers = append(strangers, at)
	}
	if err != nil {
		t.Fatalf("the host's start, after %d connections of a stranger: %v", len(strangers), err)
	}
	defer running.Stop(ctx)
	if len(strangers) == 0 {
		t.Fatal("no connection of the stranger reached the carrier before the host's start completed")
	}
	t.Logf("%d connections from "+stranger+" closed by the carrier (the first at %s) before the host's start completed at %s",
		len(strangers), strangers[0], time.Now().Format("15:04:05.000"))
	storage := &logical.InmemStorage{}
	backend, err := running.Backend(ctx, "m", &logical.BackendConfig{StorageView: storage, Logger: o.Logger, BackendUUID: "m",
		System: logical.StaticSystemView{VersionString: o.VaultVersion}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backend.HandleRequest(ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "count", Storage: storage}); err != nil {
		t.Fatal(err)
	}
}

// reap: a plugin pod whose owner, of this machine, is gone is deleted; one
// of a live owner is not.
func reap(t *testing.T, engine *kubernetes.Engine, client k8s.Interface) {
	ctx := context.Background()
	made := func(name, owner string) {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name,
				Labels:      map[string]string{runtime.LabelManagedBy: runtime.ManagedByThisPlugin, runtime.LabelClusterID: "reap-test"},
				Annotations: map[string]string{runtime.LabelOwner: owner, runtime.LabelOwnerBoot: runtime.OwnerBoot()}},
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, AutomountServiceAccountToken: new(bool), TerminationGracePeriodSeconds: new(int64),
				Containers: []corev1.Container{{Name: "sleep", Image: probeRef, ImagePullPolicy: corev1.PullNever, Command: []string{"/probeplugin", "sleep"}}}},
		}
		if _, err := client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	made("rc-orphan", "999999999:1")
	made("rc-live", runtime.Owner())
	defer client.CoreV1().Pods("default").Delete(ctx, "rc-live", metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	reaped, err := engine.ReapOrphans(ctx, "reap-test")
	if err != nil || len(reaped) != 1 || reaped[0] != "rc-orphan" {
		t.Fatalf("reaped %v, %v", reaped, err)
	}
	vaulttest.Eventually(t, 30*time.Second, "the orphan gone", func() error {
		_, err := client.CoreV1().Pods("default").Get(ctx, "rc-orphan", metav1.GetOptions{})
		if err == nil {
			return errors.New("still there")
		}
		return nil
	})
	if _, err := client.CoreV1().Pods("default").Get(ctx, "rc-live", metav1.GetOptions{}); err != nil {
		t.Fatalf("the live owner's pod: %v", err)
	}
}

// writeAndRead writes a secret through the plugin and reads it back: kv
// keeps it in the host's storage, so each request makes the plugin call back
// to the host, over the host's one connection (the broker multiplexed).
func writeAndRead(t *testing.T, engine runtime.Engine, client k8s.Interface, p runtime.Plugin, r runtime.Runtime, o runtime.Options) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	running, backend, storage := startBackend(ctx, t, engine, p, r, o, "mount-1")
	if _, err := client.NetworkingV1().NetworkPolicies("default").Get(ctx, running.ID(), metav1.GetOptions{}); err != nil {
		t.Errorf("network=false: the pod's NetworkPolicy: %v", err)
	}
	began := time.Now()
	if _, err := backend.HandleRequest(ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "hello",
		Data: map[string]any{"who": "a pod"}, Storage: storage}); err != nil {
		t.Fatalf("write: %v", err)
	}
	wrote := time.Since(began)
	resp, err := backend.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "hello", Storage: storage})
	if err != nil || resp == nil || resp.Data["who"] != "a pod" {
		t.Fatalf("read: %+v, %v", resp, err)
	}
	if keys, _ := storage.List(ctx, ""); len(keys) == 0 {
		t.Fatal("the write reached no storage of the host's")
	}
	t.Logf("write %v, read %v (each through the pod and back to the host's storage)", wrote.Round(time.Millisecond), (time.Since(began) - wrote).Round(time.Millisecond))
	// The container's figures, from its carrier's reading of its cgroup.
	var u runtime.Usage
	vaulttest.Eventually(t, 10*time.Second, "the pod's figures", func() error {
		var err error
		u, err = running.Usage(ctx)
		return err
	})
	limit := uint64(r.MemoryBytes)
	if limit == 0 {
		limit = 1 << 62 // no limit: the node's memory
	}
	if len(u.Missing) > 0 || u.MemoryBytes < 1<<20 || u.MemoryBytes > limit || u.MemoryLimitBytes == 0 || u.MemoryLimitBytes > limit ||
		(r.MemoryBytes > 0 && u.MemoryLimitBytes != limit) || u.CPUSeconds <= 0 || u.Pids < 2 {
		t.Errorf("the pod's figures under %s: %+v (memory_bytes %d)", r.OCIRuntime, u, r.MemoryBytes)
	}
	t.Logf("figures under %s: %+v", r.OCIRuntime, u)
	backend.Cleanup(ctx)
	running.Stop(ctx)
	if _, err := client.NetworkingV1().NetworkPolicies("default").Get(ctx, running.ID(), metav1.GetOptions{}); err == nil {
		t.Errorf("the NetworkPolicy %s outlived its pod", running.ID())
	}
}

// startBackend starts p with r on engine and sets up a backend in it with
// storage of its own, in memory, under the multiplexing ID id; the plugin
// is stopped when the test ends.
func startBackend(ctx context.Context, t *testing.T, engine runtime.Engine, p runtime.Plugin, r runtime.Runtime, o runtime.Options, id string) (*runtime.Running, logical.Backend, *logical.InmemStorage) {
	t.Helper()
	running, err := runtime.Start(ctx, engine, p, r, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { running.Stop(context.Background()) })
	storage := &logical.InmemStorage{}
	backend, err := running.Backend(ctx, id, &logical.BackendConfig{StorageView: storage, Logger: o.Logger, BackendUUID: id,
		System: logical.StaticSystemView{VersionString: o.VaultVersion}})
	if err != nil {
		t.Fatal(err)
	}
	return running, backend, storage
}
