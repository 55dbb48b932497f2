package acceptance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime/kubernetes"
)

// The server itself as a pod of the test node, with this plugin in its
// image, on each server: the engine is kubernetes://NAMESPACE, so the
// plugin reaches the API server with the service-account credentials the
// kubelet mounts into the server's pod (no kubeconfig anywhere in it),
// bound to a Role that holds only the verbs the README's "On Kubernetes"
// section lists. Through the real CLI (run inside the node's network
// namespace, where the pod IPs are), it writes a runtime, registers
// HashiCorp's kv, hosts it and writes and reads through the hosted mount:
// the server in a pod made a plugin pod through that Role. The plugin pod
// has the spec the engine promises; deleting the mount deletes it, and
// nothing of it is left.
//
// The node has no kube-proxy and its pods no default route, so the
// service IP in the kubelet's KUBERNETES_SERVICE_HOST reaches nothing: the
// server's pod names the API server as `kubernetes` (a name its
// certificate holds), which the pod's /etc/hosts (hostAliases) gives the
// pod network's gateway, an address of the node's network namespace where
// the API server listens on every address.
func TestVaultAsAPod(t *testing.T) {
	vaulttest.RequireAcceptance(t)
	node := startPodNode(t)
	rules := readmeRoleRules(t)
	server, port := apiServerPort(t, node)
	gateway := podGateway(t, node)
	t.Logf("the API server %s, reached from pods as https://kubernetes:%s (%s)", server, port, gateway)
	vaulttest.EachServer(t, func(t *testing.T, k vaulttest.Kind) {
		testServerAsAPod(t, k, node, rules, gateway, port)
	})
}

// readmeRoleRules are the rules of the Role in the README's "On
// Kubernetes" section, as it writes them (one flow mapping a line).
func readmeRoleRules(t *testing.T) []string {
	t.Helper()
	for _, b := range readmeShellBlocks(t, "../README.md") {
		if b.kubernetes == "" || !strings.Contains(b.script, "kind: Role\n") {
			continue
		}
		var rules []string
		for _, line := range strings.Split(b.script, "\n") {
			if strings.HasPrefix(line, "- {apiGroups:") {
				rules = append(rules, line)
			}
		}
		if len(rules) < 5 {
			t.Fatalf("%s: the README's Role has %d rules written as this test reads them (- {apiGroups: ...}): its form changed", b.where, len(rules))
		}
		return rules
	}
	t.Fatal("no Role in the README's Kubernetes blocks: the README moved")
	return nil
}

// apiServerPort is the API server's address in the admin kubeconfig and its
// port, which is its port inside the node's network namespace too.
func apiServerPort(t *testing.T, node *podNode) (server, port string) {
	t.Helper()
	server = node.Kubectl(t, "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}")
	u, err := url.Parse(server)
	if err != nil || u.Port() == "" {
		t.Fatalf("the kubeconfig's server %q: %v", server, err)
	}
	return server, u.Port()
}

// podGateway is the pod network's gateway: the address of the node's
// network namespace that pods reach. The node's spec has no pod CIDR (no
// controller-manager allocates it), so it is read where start-k8s.sh
// writes it: the bridge network's conflist, beside the admin kubeconfig in
// the node's directory.
func podGateway(t *testing.T, node *podNode) string {
	t.Helper()
	confs, _ := filepath.Glob(filepath.Join(filepath.Dir(node.Kubeconfig), "cni", "net.d", "*.conflist"))
	if len(confs) != 1 {
		t.Fatalf("the node's CNI configuration: %d conflists beside %s, want 1 (start-k8s.sh's layout changed)", len(confs), node.Kubeconfig)
	}
	data, err := os.ReadFile(confs[0])
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		Plugins []struct {
			IPAM struct {
				Ranges [][]struct {
					Gateway string `json:"gateway"`
				} `json:"ranges"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(data, &conf); err != nil || len(conf.Plugins) == 0 || len(conf.Plugins[0].IPAM.Ranges) == 0 ||
		len(conf.Plugins[0].IPAM.Ranges[0]) == 0 || conf.Plugins[0].IPAM.Ranges[0][0].Gateway == "" {
		t.Fatalf("no gateway in %s (%v):\n%s", confs[0], err, data)
	}
	return conf.Plugins[0].IPAM.Ranges[0][0].Gateway
}

// podServer is a server running as a pod, driven by its CLI from inside
// the node's network namespace.
type podServer struct {
	k     vaulttest.Kind
	bin   string
	netns string
	addr  string
}

func (s *podServer) run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + s.netns, s.bin}, args...)...)
	cmd.Env = append(os.Environ(), s.k.CLIEnv(s.addr, "root")...)
	cmd.WaitDelay = 5 * time.Second
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		exitErr, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s %v: %v", s.k.CLI, args, err)
		}
		code = exitErr.ExitCode()
	}
	return out.String(), errOut.String(), code
}

func (s *podServer) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := s.run(t, args...)
	if code != 0 {
		t.Fatalf("%s %s: exit %d\nstdout: %s\nstderr: %s", s.k.CLI, strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func (s *podServer) mustJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out := s.mustRun(t, append([]string{args[0], "-format=json"}, args[1:]...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%s %v: decoding %q: %v", s.k.CLI, args, out, err)
	}
}

func testServerAsAPod(t *testing.T, k vaulttest.Kind, node *podNode, rules []string, gateway, port string) {
	serverBin := k.Binary(t)
	ns := "rc-" + k.Name + "-pod"
	const sa, podName = "catalog", "server"
	kc := func(args ...string) string { return node.Kubectl(t, append(args, "-n", ns)...) }

	// The namespace, as a real cluster would have it (no controller-manager
	// here: its default ServiceAccount, which the plugin pods run as, and
	// the kube-root-ca.crt ConfigMap a service-account token volume
	// mounts), the server's ServiceAccount and the README's Role.
	node.Kubectl(t, "create", "namespace", ns)
	kc("create", "serviceaccount", "default")
	kc("create", "serviceaccount", sa)
	dir := vaulttest.ShortTempDir(t)
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, []byte(node.Kubectl(t, "get", "configmap", "kube-root-ca.crt", "-n", "default",
		"-o", `jsonpath={.data.ca\.crt}`)), 0o644); err != nil {
		t.Fatal(err)
	}
	kc("create", "configmap", "kube-root-ca.crt", "--from-file=ca.crt="+ca)
	node.Apply(t, fmt.Sprintf(`apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: vault-plugin-engine, namespace: %[1]s}
rules:
%[2]s
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: vault-plugin-engine, namespace: %[1]s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: vault-plugin-engine}
subjects: [{kind: ServiceAccount, name: %[3]s, namespace: %[1]s}]
`, ns, strings.Join(rules, "\n"), sa))
	as := "--as=system:serviceaccount:" + ns + ":" + sa
	// What the Role lets it do, and some of what it does not.
	for _, c := range []struct{ verb, what, sub, want string }{
		{"create", "pods", "", "yes"}, {"watch", "pods", "", "yes"}, {"delete", "pods", "", "yes"},
		{"get", "pods", "log", "yes"}, {"list", "events", "", "yes"},
		{"create", "networkpolicies.networking.k8s.io", "", "yes"}, {"create", "secrets", "", "yes"},
		{"list", "secrets", "", "no"}, {"get", "secrets", "", "no"}, {"create", "pods", "exec", "no"},
		{"update", "pods", "", "no"}, {"list", "runtimeclasses.node.k8s.io", "", "no"},
	} {
		args := []string{"auth", "can-i", c.verb, c.what, "-n", ns, as}
		if c.sub != "" {
			args = append(args, "--subresource="+c.sub)
		}
		out, _ := node.TryKubectl(args...)
		if got := strings.TrimSpace(out); got != c.want {
			t.Fatalf("kubectl %s: %q, want %q", strings.Join(args, " "), got, c.want)
		}
	}

	// The server's image: the pinned binary, the libraries it links, and
	// this plugin in /plugins, which dev mode registers.
	started := time.Now()
	pluginDir := filepath.Join(dir, "plugins")
	if err := os.Mkdir(pluginDir, 0o755); err != nil {
		t.Fatal(err)
	}
	plugin := vaulttest.BuildPlugin(t, pluginDir)
	image := "localhost/rc-" + k.Name + "-server:1"
	tarPath := filepath.Join(dir, "server.tar")
	if out, err := exec.Command("../scripts/k8s/vault-image.sh", serverBin, image, tarPath, plugin).CombinedOutput(); err != nil {
		t.Fatalf("scripts/k8s/vault-image.sh: %v\n%s", err, out)
	}
	if out, err := exec.Command(filepath.Join(node.Bin, "ctr"), "-a", node.Containerd, "-n", "k8s.io", "images", "import", tarPath).CombinedOutput(); err != nil {
		t.Fatalf("importing %s: %v\n%s", image, err, out)
	}
	os.Remove(tarPath)
	t.Logf("%s's image built and imported in %v", k.Product, time.Since(started).Round(time.Millisecond))

	// The server's pod: dev mode, listening on the pod's IP, its token
	// mounted, no kubeconfig.
	started = time.Now()
	node.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  serviceAccountName: %[3]s
  automountServiceAccountToken: true
  enableServiceLinks: false
  terminationGracePeriodSeconds: 10
  hostAliases: [{ip: %[4]q, hostnames: [kubernetes]}]
  containers:
  - name: server
    image: %[5]s
    imagePullPolicy: Never
    args: [server, -dev, -dev-listen-address=0.0.0.0:8200, -dev-root-token-id=root, -dev-plugin-dir=/plugins, -dev-no-store-token]
    env:
    - {name: KUBERNETES_SERVICE_HOST, value: kubernetes}
    - {name: KUBERNETES_SERVICE_PORT, value: %[6]q}
    - {name: %[7]sLOG_LEVEL, value: info}
    ports: [{name: api, containerPort: 8200}]
    volumeMounts: [{name: tmp, mountPath: /tmp}]
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {drop: [ALL]}
  volumes: [{name: tmp, emptyDir: {}}]
`, podName, ns, sa, gateway, image, port, k.EnvPrefix))
	t.Cleanup(func() {
		if t.Failed() {
			out, err := node.TryKubectl("logs", podName, "-n", ns)
			t.Logf("the %s pod's log (%v):\n%s", k.Product, err, out)
			out, _ = node.TryKubectl("get", "events", "-n", ns)
			t.Logf("events in %s:\n%s", ns, out)
		}
		node.TryKubectl("delete", "pod", podName, "-n", ns, "--wait=true", "--timeout=60s")
	})
	kc("wait", "--for=condition=Ready", "pod/"+podName, "--timeout=120s")
	var serverPod corev1.Pod
	if err := json.Unmarshal([]byte(kc("get", "pod", podName, "-o", "json")), &serverPod); err != nil {
		t.Fatal(err)
	}
	ip := serverPod.Status.PodIP
	if ip == "" {
		t.Fatalf("the %s pod has no IP: %+v", k.Product, serverPod.Status)
	}
	s := &podServer{k: k, bin: serverBin, netns: node.Netns, addr: "http://" + ip + ":8200"}
	vaulttest.Eventually(t, 60*time.Second, k.Product+" in its pod answers", func() error {
		if out, errOut, code := s.run(t, "status"); code != 0 {
			return fmt.Errorf("exit %d: %s%s", code, out, errOut)
		}
		return nil
	})
	t.Logf("%s running as the pod %s/%s at %s, answering in %v", k.Product, ns, podName, ip, time.Since(started).Round(time.Millisecond))
	// No kubeconfig: the plugin has only the pod's service-account token.
	for _, m := range serverPod.Spec.Containers[0].VolumeMounts {
		if m.MountPath != "/tmp" && m.MountPath != "/var/run/secrets/kubernetes.io/serviceaccount" {
			t.Fatalf("the %s pod mounts %s: only /tmp and its token were meant", k.Product, m.MountPath)
		}
	}

	// The plugin; per OCI runtime (the node's default runc, and gVisor's
	// runsc, the default of a runtime that names none) a runtime with the
	// in-cluster engine, kv registered under it and a hosted mount; a write
	// and a read through each.
	s.mustRun(t, "secrets", "enable", "-path=runtimes", vaulttest.PluginName)
	for _, oci := range []string{"runc", "runsc"} {
		started = time.Now()
		var written readResult
		s.mustJSON(t, &written, "write", "runtimes/catalog/container/"+oci, "oci_runtime="+oci,
			"memory_bytes=134217728", "cpu_nanos=500000000", "engine="+kubernetes.Scheme+ns)
		// RuntimeClasses are cluster-wide: the namespaced Role cannot let
		// the engine list them, and the write says it could not check.
		if len(written.Warnings) != 1 || !strings.Contains(written.Warnings[0], "runtimeclasses") ||
			!strings.Contains(written.Warnings[0], "its plugins start if the engine runs "+oci) {
			t.Fatalf("the runtime write's warnings: %q, want one that RuntimeClasses could not be listed", written.Warnings)
		}
		s.mustRun(t, "write", "runtimes/plugins/catalog/secret/kv-"+oci, "oci_image="+podKVImage, "version="+podVersion,
			"sha256="+node.kvID, "command="+node.kvCommand, "runtime="+oci)
		s.mustRun(t, "write", "runtimes/hosted/kv-"+oci, "plugin=kv-"+oci)
		s.mustRun(t, "write", "runtimes/mounts/kv-"+oci+"/app/db", "password=hunter2-"+oci)
		var read readResult
		s.mustJSON(t, &read, "read", "runtimes/mounts/kv-"+oci+"/app/db")
		if read.Data["password"] != "hunter2-"+oci {
			t.Fatalf("read through the hosted mount kv-%s: %#v", oci, read.Data)
		}
		t.Logf("%s: runtime written, kv hosted, written and read through it in %v (the write's warning: %q)",
			oci, time.Since(started).Round(time.Millisecond), written.Warnings[0])

		// The mount's container is a pod in the namespace, made by this
		// plugin (its field manager is the engine's user agent), with the
		// spec the engine promises, and its carrier admits only the
		// server's pod.
		var st mountState
		s.mustJSON(t, &st, "read", "runtimes/hosted/kv-"+oci)
		if st.Data.State != "running" || st.Data.ContainerID == "" || st.Data.OCIRuntime != oci {
			t.Fatalf("hosted kv-%s: %+v", oci, st.Data)
		}
		var pod corev1.Pod
		if err := json.Unmarshal([]byte(kc("get", "pod", st.Data.ContainerID, "-o", "json", "--show-managed-fields")), &pod); err != nil {
			t.Fatal(err)
		}
		class := ""
		if oci != "runc" {
			class = oci // named after its handler: the engine may not list the classes
		}
		checkPluginPod(t, &pod, node, ip, class)
		var managers []string
		for _, f := range pod.ManagedFields {
			managers = append(managers, f.Manager)
		}
		if !slices.Contains(managers, "vault-plugin-runtime-catalog") {
			t.Fatalf("pod %s: field managers %v, not this plugin's", pod.Name, managers)
		}
		t.Logf("%s: pod %s/%s at %s, class %q, made by %v", oci, ns, pod.Name, pod.Status.PodIP, class, managers)
	}

	// Deleting the mounts deletes their pods, and nothing of them is left.
	for _, oci := range []string{"runc", "runsc"} {
		s.mustRun(t, "delete", "runtimes/hosted/kv-"+oci)
	}
	vaulttest.Eventually(t, 60*time.Second, "the plugin pods gone", func() error {
		out, err := node.TryKubectl("get", "pods,networkpolicies,secrets", "-n", ns, "-o", "name")
		if err != nil {
			return err
		}
		for _, name := range strings.Fields(out) {
			if name != "pod/"+podName {
				return fmt.Errorf("left in %s: %s", ns, strings.Join(strings.Fields(out), " "))
			}
		}
		return nil
	})
	// Nothing the engine did was forbidden to its ServiceAccount but the
	// cluster-wide RuntimeClasses, which no namespaced Role can grant.
	logs := node.Kubectl(t, "logs", podName, "-n", ns)
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "forbidden") && !strings.Contains(line, "runtimeclasses") {
			t.Errorf("the %s pod's log says something was forbidden to its ServiceAccount: %s", k.Product, line)
		}
	}
}

// checkPluginPod checks the plugin pod's spec: the runtime's limits, its
// RuntimeClass (class, "" for none), the engine's hardening, the carrier admitting only the server's
// pod, no service-account token, running on the node.
func checkPluginPod(t *testing.T, pod *corev1.Pod, node *podNode, serverIP, class string) {
	t.Helper()
	var problems []string
	want := func(what string, got, want any) {
		if fmt.Sprint(got) != fmt.Sprint(want) {
			problems = append(problems, fmt.Sprintf("%s = %v, want %v", what, got, want))
		}
	}
	spec := pod.Spec
	want("phase", pod.Status.Phase, corev1.PodRunning)
	want("node", spec.NodeName, node.Name)
	if class == "" {
		want("runtimeClassName", spec.RuntimeClassName, (*string)(nil))
	} else if spec.RuntimeClassName == nil || *spec.RuntimeClassName != class {
		problems = append(problems, fmt.Sprintf("runtimeClassName = %v, want %s", spec.RuntimeClassName, class))
	}
	want("restartPolicy", spec.RestartPolicy, corev1.RestartPolicyNever)
	want("automountServiceAccountToken", *spec.AutomountServiceAccountToken, false)
	want("enableServiceLinks", *spec.EnableServiceLinks, false)
	want("serviceAccountName", spec.ServiceAccountName, "default")
	// The node is Kubernetes 1.35: the carrier is an image volume.
	if len(spec.InitContainers) != 0 || len(spec.Containers) != 1 || len(spec.Volumes) == 0 || spec.Volumes[0].Image == nil {
		t.Fatalf("pod %s: %d init containers and %d containers, volumes %+v; want 0 and 1, the carrier's image as the first volume",
			pod.Name, len(spec.InitContainers), len(spec.Containers), spec.Volumes)
	}
	want("carrier image", spec.Volumes[0].Image.Reference, kubernetes.DefaultCarrierImage)
	c := spec.Containers[0]
	want("image", c.Image, podKVImage+":"+podVersion)
	want("pull policy", c.ImagePullPolicy, corev1.PullNever)
	want("command", c.Command, []string{"/.rc-carrier/carrier", "run", node.kvCommand})
	want("memory limit", c.Resources.Limits.Memory(), "128Mi")
	want("cpu limit", c.Resources.Limits.Cpu(), "500m")
	want("memory request", c.Resources.Requests.Memory(), "128Mi")
	sc := c.SecurityContext
	want("capabilities dropped", sc.Capabilities.Drop, []corev1.Capability{"ALL"})
	want("capabilities added", sc.Capabilities.Add, []corev1.Capability(nil))
	want("allowPrivilegeEscalation", *sc.AllowPrivilegeEscalation, false)
	want("readOnlyRootFilesystem", *sc.ReadOnlyRootFilesystem, true)
	want("seccomp", sc.SeccompProfile.Type, corev1.SeccompProfileTypeRuntimeDefault)
	for _, m := range c.VolumeMounts {
		if strings.HasPrefix(m.MountPath, "/var/run/secrets") {
			problems = append(problems, "a token is mounted at "+m.MountPath)
		}
	}
	admit := ""
	for _, e := range c.Env {
		if e.Name == "RC_CARRIER_ADMIT" {
			admit = e.Value
		}
	}
	// The server's addresses, as it sees them in its pod: its pod IP only
	// (loopback and link-local are never admitted), nothing of the node's.
	want("the carrier admits", admit, serverIP)
	if pod.Status.PodIP == "" || pod.Status.PodIP == serverIP {
		problems = append(problems, fmt.Sprintf("pod IP %q (the server's is %s)", pod.Status.PodIP, serverIP))
	}
	if len(problems) > 0 {
		t.Fatalf("plugin pod %s:\n  %s", pod.Name, strings.Join(problems, "\n  "))
	}
}
