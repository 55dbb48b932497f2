package acceptance

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/k8stest"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime/kubernetes"
)

// podNode is the test Kubernetes node with the images the hosted plugins'
// pods run imported into its containerd.
type podNode struct {
	*k8stest.Node
	kvID, jwtID string
	kvCommand   string
	jwtCommand  string
}

const (
	podKVImage  = "localhost/rc-kv-plugin"
	podJWTImage = "localhost/rc-jwt-plugin"
	podVersion  = "0.1.0"
)

// startPodNode starts the node and imports HashiCorp's kv and JWT plugins
// and the engine's carrier, under the name its engine uses by default.
func startPodNode(t *testing.T) *podNode {
	t.Helper()
	kv, jwt := os.Getenv("KV_PLUGIN_BINARY"), os.Getenv("JWT_PLUGIN_BINARY")
	if kv == "" || jwt == "" {
		vaulttest.RequireReal(t, "HashiCorp's kv and JWT plugins ($KV_PLUGIN_BINARY, $JWT_PLUGIN_BINARY)", "run `make test`")
	}
	n := k8stest.Start(t)
	p := &podNode{Node: n, kvCommand: "/" + filepath.Base(kv), jwtCommand: "/" + filepath.Base(jwt)}
	p.kvID = n.Image(t, kv, podKVImage+":"+podVersion)
	p.jwtID = n.Image(t, jwt, podJWTImage+":"+podVersion)
	n.Image(t, k8stest.BuildStatic(t, "runtime/kubernetes/carrier"), kubernetes.DefaultCarrierImage)
	return p
}

// engine is the engine address of the node's default namespace, through
// its admin kubeconfig.
func (p *podNode) engine() string { return "kubernetes://default" + p.Kubeconfig }

// startVault starts a dev server whose process, and so this plugin's, is in
// the node's network namespace, where the pods are.
func (p *podNode) startVault(t *testing.T, k vaulttest.Kind) *vaulttest.Server {
	t.Helper()
	return k.StartDevIn(t, p.Netns, filepath.Join(p.Bin, "rc-k8s-forward"), "runtimes")
}

// pluginPods are the names of the plugin pods on the node.
func (p *podNode) pluginPods(t *testing.T) []string {
	t.Helper()
	out := p.Kubectl(t, "get", "pods", "-n", "default", "-l", "io.github.vault-plugin-runtime-catalog.managed-by",
		"-o", "jsonpath={range .items[*]}{.metadata.name}{\" \"}{end}")
	return strings.Fields(out)
}

// HashiCorp's kv (v1 and v2) hosted in pods of a real Kubernetes node under
// runc and gVisor, through the CLI, on each server: the runtime picks the
// RuntimeClass and the limits, the pod is the mount's container, a pod
// deleted under traffic is replaced with no failed request, a token scoped
// to one hosted mount reaches only it, and deleting the mounts deletes
// their pods.
func TestHostedInPods(t *testing.T) {
	node := startPodNode(t)
	vaulttest.EachServer(t, func(t *testing.T, k vaulttest.Kind) {
		for _, oci := range []string{"runc", "runsc"} {
			t.Run(oci, func(t *testing.T) { testHostedInPods(t, k, node, oci) })
		}
	})
}

func testHostedInPods(t *testing.T, k vaulttest.Kind, node *podNode, oci string) {
	v := node.startVault(t, k)
	v.MustRun(t, "write", "runtimes/catalog/container/pods", "oci_runtime="+oci, "memory_bytes=134217728",
		"cpu_nanos=500000000", "engine="+node.engine())
	v.MustRun(t, "write", "runtimes/plugins/catalog/secret/kv", "oci_image="+podKVImage, "version="+podVersion,
		"sha256="+node.kvID, "command="+node.kvCommand, "runtime=pods")
	v.MustRun(t, "write", "runtimes/hosted/kv1", "plugin=kv")
	v.MustRun(t, "write", "runtimes/hosted/kv2", "plugin=kv", "options=version=2")

	v.MustRun(t, "write", "runtimes/mounts/kv1/app/db", "password=hunter2")
	var read readResult
	v.MustJSON(t, &read, "read", "runtimes/mounts/kv1/app/db")
	if read.Data["password"] != "hunter2" {
		t.Fatalf("kv1 read: %#v", read.Data)
	}
	eventually(t, "kv2 write", func() error {
		return writeJSON(t, v, "write", "runtimes/mounts/kv2/data/app/db", `{"data":{"user":"app"}}`)
	})
	var versioned struct {
		Data struct {
			Data map[string]interface{} `json:"data"`
		} `json:"data"`
	}
	v.MustJSON(t, &versioned, "read", "runtimes/mounts/kv2/data/app/db")
	if versioned.Data.Data["user"] != "app" {
		t.Fatalf("kv2 read: %#v", versioned.Data)
	}

	// The mount's container is a pod, with the runtime's class and limits,
	// and kv (multiplexed) serves both mounts from it.
	var st, st2 mountState
	v.MustJSON(t, &st, "read", "runtimes/hosted/kv1")
	v.MustJSON(t, &st2, "read", "runtimes/hosted/kv2")
	if st.Data.State != "running" || st.Data.ContainerID == "" || st.Data.OCIRuntime != oci || st2.Data.ContainerID != st.Data.ContainerID {
		t.Fatalf("kv1: %+v; kv2: %+v", st.Data, st2.Data)
	}
	// Its figures, as the pod's carrier reads them in its cgroup: within
	// the runtime's 128 MiB.
	eventually(t, "kv1's figures", func() error {
		var fig mountState
		v.MustJSON(t, &fig, "read", "runtimes/hosted/kv1")
		h := fig.Data.Health
		if h.MemoryBytes == nil || *h.MemoryBytes <= 0 || *h.MemoryBytes > 128<<20 || h.MemoryLimitBytes == nil || *h.MemoryLimitBytes != 128<<20 ||
			h.CPUSeconds == nil || *h.CPUSeconds <= 0 || h.Pids == nil || *h.Pids < 2 || len(h.Unavailable) > 0 {
			return fmt.Errorf("kv1's figures: %+v (%s)", h, h.UsageError)
		}
		return nil
	})
	// A registration no pod can run (no command for the carrier to start)
	// is the registration's fault, in run-config as at a start.
	v.MustRun(t, "write", "runtimes/plugins/catalog/secret/kv-nocmd", "oci_image="+podKVImage, "version="+podVersion,
		"sha256="+node.kvID, "runtime=pods")
	if _, errOut, code := v.Run(t, "read", "runtimes/plugins/catalog/secret/kv-nocmd/run-config"); code != 2 ||
		!strings.Contains(errOut, "Code: 400") || !strings.Contains(errOut, "register the plugin's command") {
		t.Fatalf("run-config of a plugin with no command on Kubernetes: exit %d %s", code, errOut)
	}
	pod := st.Data.ContainerID
	spec := node.Kubectl(t, "get", "pod", pod, "-n", "default", "-o",
		"jsonpath={.spec.runtimeClassName}|{.spec.containers[0].resources.limits.memory}|{.spec.containers[0].resources.limits.cpu}|{.spec.automountServiceAccountToken}")
	wantClass := ""
	if oci == "runsc" {
		wantClass = "runsc"
	}
	if want := wantClass + "|128Mi|500m|false"; spec != want {
		t.Fatalf("pod %s: class|memory|cpu|token = %q, want %q", pod, spec, want)
	}

	// A token scoped to one hosted mount reaches only that mount.
	if _, errOut, code := v.RunInput(t, v.Token, strings.NewReader(`path "runtimes/mounts/kv1/*" { capabilities = ["read"] }`),
		"policy", "write", "kv1-reader", "-"); code != 0 {
		t.Fatalf("policy write: %s", errOut)
	}
	var tok struct {
		Auth struct {
			ClientToken string `json:"client_token"`
		} `json:"auth"`
	}
	v.MustJSON(t, &tok, "write", "auth/token/create", "policies=kv1-reader")
	if _, errOut, code := v.RunAs(t, tok.Auth.ClientToken, "read", "runtimes/mounts/kv1/app/db"); code != 0 {
		t.Fatalf("the scoped token cannot read its mount: %s", errOut)
	}
	if _, errOut, code := v.RunAs(t, tok.Auth.ClientToken, "read", "runtimes/mounts/kv2/data/app/db"); code != 2 || !strings.Contains(errOut, "permission denied") {
		t.Fatalf("the scoped token read another mount: exit %d %s", code, errOut)
	}

	// kubectl delete pod under traffic: no read fails. The host sees the
	// pod's deletion, starts a new pod, and sends the reads after it there,
	// while the old one (its carrier holding SIGTERM back) answers those in
	// flight; it then closes the old one's session, which ends it.
	var reads atomic.Int64
	var errs sync.Map
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, errOut, code := v.Run(t, "read", "runtimes/mounts/kv1/app/db"); code != 0 {
					errs.Store(errOut, true)
				}
				reads.Add(1)
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	began := time.Now()
	node.Kubectl(t, "delete", "pod", pod, "-n", "default") // waits until the pod is gone
	deleted := time.Since(began)
	vaulttest.Eventually(t, 60*time.Second, "kv1 served by a new pod", func() error {
		var after mountState
		v.MustJSON(t, &after, "read", "runtimes/hosted/kv1")
		if after.Data.State != "running" || after.Data.ContainerID == pod || after.Data.ContainerID == "" {
			return fmt.Errorf("kv1: %+v", after.Data)
		}
		return nil
	})
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	var msgs []string
	errs.Range(func(k, _ any) bool { msgs = append(msgs, k.(string)); return true })
	if len(msgs) > 0 {
		t.Fatalf("reads failed across the pod's deletion (%d reads): %s", reads.Load(), strings.Join(msgs, " | "))
	}
	v.MustJSON(t, &st, "read", "runtimes/hosted/kv1")
	if st.Data.Restarts != 1 || st.Data.Health.RestartCauses["replaced"] != 1 || len(st.Data.Health.Exits) != 0 {
		t.Fatalf("after the pod's deletion: %+v", st.Data)
	}
	t.Logf("%d reads across the deletion of pod %s, none failed; kubectl delete returned after %s", reads.Load(), pod, deleted.Round(time.Millisecond))

	// Deleting the mounts deletes their pods.
	v.MustRun(t, "delete", "runtimes/hosted/kv1")
	v.MustRun(t, "delete", "runtimes/hosted/kv2")
	vaulttest.Eventually(t, 60*time.Second, "no plugin pod left", func() error {
		if left := node.pluginPods(t); len(left) > 0 {
			return fmt.Errorf("pods left: %v", left)
		}
		return nil
	})
}

// HashiCorp's JWT auth plugin hosted in a pod of the real node under runc
// and gVisor, by an auth mount of this plugin, on each server: a valid JWT
// logs in with the role's policy, a bad one makes no token, and after its
// pod is deleted the next login and an earlier token's renewal are served
// by a new pod.
func TestHostedAuthInPods(t *testing.T) {
	node := startPodNode(t)
	idp, stranger := newSigner(t), newSigner(t)
	vaulttest.EachServer(t, func(t *testing.T, k vaulttest.Kind) {
		for _, oci := range []string{"runc", "runsc"} {
			t.Run(oci, func(t *testing.T) {
				v := node.startVault(t, k)
				v.EnableAuth(t, "runtimes")
				v.MustRun(t, "write", "auth/runtimes/catalog/container/pods", "oci_runtime="+oci, "memory_bytes=134217728", "engine="+node.engine())
				v.MustRun(t, "write", "auth/runtimes/plugins/catalog/auth/jwt", "oci_image="+podJWTImage, "version="+podVersion,
					"sha256="+node.jwtID, "command="+node.jwtCommand, "runtime=pods")
				v.MustRun(t, "write", "auth/runtimes/hosted/jwt", "plugin=jwt")
				v.MustRun(t, "write", "sys/plugins/reload/backend", "mounts=auth/runtimes/")
				dir := vaulttest.ShortTempDir(t)
				v.MustRun(t, "write", "auth/runtimes/mounts/jwt/config", "jwt_validation_pubkeys=@"+idp.publicPEM(t, dir))
				v.MustRun(t, "write", "auth/runtimes/mounts/jwt/role/dev", "role_type=jwt", "bound_audiences=rc-test",
					"user_claim=sub", "token_policies=reader", "token_ttl=1h", "token_max_ttl=2h")
				login := func(jwt string) (loginResult, string, int) { return jwtLogin(t, v, jwt) }
				first, errOut, code := login(idp.token(t, "alice", "rc-test", time.Now().Add(time.Hour)))
				if code != 0 || first.Auth.ClientToken == "" || !slices.Contains(first.Auth.TokenPolicies, "reader") {
					t.Fatalf("login: exit %d %s %+v", code, errOut, first.Auth)
				}
				if r, errOut, code := login(stranger.token(t, "alice", "rc-test", time.Now().Add(time.Hour))); code != 2 || r.Auth.ClientToken != "" || !strings.Contains(errOut, "Code: 400") {
					t.Fatalf("a login with another key's JWT: exit %d %s", code, errOut)
				}

				var st mountState
				v.MustJSON(t, &st, "read", "auth/runtimes/hosted/jwt")
				if st.Data.State != "running" || st.Data.ContainerID == "" {
					t.Fatalf("hosted jwt: %+v", st.Data)
				}
				node.Kubectl(t, "delete", "pod", st.Data.ContainerID, "-n", "default")
				second, errOut, code := login(idp.token(t, "alice", "rc-test", time.Now().Add(time.Hour)))
				if code != 0 || second.Auth.EntityID != first.Auth.EntityID {
					t.Fatalf("login after the pod's deletion: exit %d %s %+v", code, errOut, second.Auth)
				}
				var renewed loginResult
				mustJSON2(t, v, &renewed, "token", "renew", first.Auth.ClientToken)
				if renewed.Auth.ClientToken != first.Auth.ClientToken {
					t.Fatalf("renew after the pod's deletion: %+v", renewed.Auth)
				}
				var after mountState
				v.MustJSON(t, &after, "read", "auth/runtimes/hosted/jwt")
				if after.Data.Restarts != 1 || after.Data.ContainerID == st.Data.ContainerID {
					t.Fatalf("after the pod's deletion: %+v", after.Data)
				}
				// A reload replaces the pod.
				v.MustRun(t, "write", "auth/runtimes/plugins/reload", "mounts=jwt")
				vaulttest.Eventually(t, time.Minute, "the reloaded mount in a new pod", func() error {
					var reloaded mountState
					v.MustJSON(t, &reloaded, "read", "auth/runtimes/hosted/jwt")
					if reloaded.Data.State != "running" || reloaded.Data.ContainerID == after.Data.ContainerID {
						return fmt.Errorf("after a reload: %+v (before: pod %s)", reloaded.Data, after.Data.ContainerID)
					}
					return nil
				})
				if _, errOut, code := login(idp.token(t, "alice", "rc-test", time.Now().Add(time.Hour))); code != 0 {
					t.Fatalf("login after the reload: exit %d %s", code, errOut)
				}
				v.MustRun(t, "delete", "auth/runtimes/hosted/jwt")
				vaulttest.Eventually(t, 60*time.Second, "no plugin pod left", func() error {
					if left := node.pluginPods(t); len(left) > 0 {
						return fmt.Errorf("pods left: %v", left)
					}
					return nil
				})
			})
		}
	})
}
