package kubernetes

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

const testAddress = "kubernetes://plugins/etc/kubeconfig"

// fakeEngine is an engine on client-go's fake clientset, whose cluster has
// the RuntimeClass gvisor (handler runsc).
func fakeEngine(t *testing.T, objs ...any) (*Engine, *fake.Clientset) {
	t.Helper()
	client := fake.NewClientset(&nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "gvisor"}, Handler: "runsc"})
	for _, o := range objs {
		if pod, ok := o.(*corev1.Pod); ok {
			if _, err := client.CoreV1().Pods(pod.Namespace).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return NewWithClient(testAddress, "plugins", client, WithCarrierImage("localhost/rc-carrier:1"), WithHostAddresses("10.0.0.1")), client
}

func testSpec() runtime.Spec {
	return runtime.Spec{
		Plugin: runtime.Plugin{Name: "kv", Type: "secret", Image: "registry.example/kv", Version: "v0.25.0",
			Command: "/vault-plugin-secrets-kv", Args: []string{"-tls-skip-verify"}, Env: []string{"A=1"}},
		Runtime:   runtime.Runtime{Name: "rt", OCIRuntime: "runsc", NanoCPUs: 1_500_000_001, MemoryBytes: 64 << 20},
		Hardening: runtime.DefaultHardening(),
		Host: runtime.Host{PID: 42, Owner: "42:123", OwnerBoot: "boot", ClusterID: "c1", GroupID: 1000,
			BaseEnv:   []string{"PLUGIN_MULTIPLEX_GRPC=true", "PLUGIN_UNIX_SOCKET_GROUP=1000", "PLUGIN_CLIENT_CERT=x"},
			SDKEnv:    []string{"VAULT_VERSION=1.21.0"},
			SocketDir: "/tmp/host-dir"},
	}
}

func preview(t *testing.T, e *Engine, spec runtime.Spec) objects {
	t.Helper()
	p, err := e.Preview(spec)
	if err != nil {
		t.Fatal(err)
	}
	return p.Request.(objects)
}

func env(c corev1.Container) map[string]string {
	m := map[string]string{}
	for _, v := range c.Env {
		m[v.Name] = v.Value
	}
	return m
}

// Each runtime field, and the hardening, as the pod spec says them.
func TestPodSpecFieldByField(t *testing.T) {
	e, _ := fakeEngine(t)
	spec := testSpec()
	objs := preview(t, e, spec)
	pod := objs.Pod
	ps := pod.Spec
	if ps.RestartPolicy != corev1.RestartPolicyNever || *ps.AutomountServiceAccountToken || *ps.EnableServiceLinks {
		t.Errorf("restartPolicy %s, automountServiceAccountToken %v, enableServiceLinks %v", ps.RestartPolicy, *ps.AutomountServiceAccountToken, *ps.EnableServiceLinks)
	}
	if ps.RuntimeClassName == nil || *ps.RuntimeClassName != "gvisor" {
		t.Errorf("oci_runtime runsc: runtimeClassName %v, want gvisor (the class whose handler is runsc)", ps.RuntimeClassName)
	}
	c := ps.Containers[0]
	if got := c.Resources.Limits.Cpu().MilliValue(); got != 1501 {
		t.Errorf("cpu_nanos 1500000001: limit %dm, want 1501m (rounded up)", got)
	}
	if got := c.Resources.Limits.Memory().Value(); got != 64<<20 {
		t.Errorf("memory_bytes: limit %d", got)
	}
	if !c.Resources.Requests.Cpu().Equal(*c.Resources.Limits.Cpu()) || !c.Resources.Requests.Memory().Equal(*c.Resources.Limits.Memory()) {
		t.Errorf("requests %v != limits %v", c.Resources.Requests, c.Resources.Limits)
	}
	if init := ps.InitContainers[0]; init.Image != "localhost/rc-carrier:1" || !slices.Equal(init.Command, []string{"/carrier", "install", carrierBinary}) ||
		!init.Resources.Limits.Cpu().Equal(*c.Resources.Limits.Cpu()) {
		t.Errorf("init container: %+v", init)
	}
	sc := c.SecurityContext
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 || *sc.AllowPrivilegeEscalation ||
		!*sc.ReadOnlyRootFilesystem || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault || sc.RunAsNonRoot != nil {
		t.Errorf("security context: %+v", sc)
	}
	if c.Image != "registry.example/kv:0.25.0" || c.ImagePullPolicy != corev1.PullNever {
		t.Errorf("image %s, pull policy %s", c.Image, c.ImagePullPolicy)
	}
	if want := []string{carrierBinary, "run", "/vault-plugin-secrets-kv", "-tls-skip-verify"}; !slices.Equal(c.Command, want) {
		t.Errorf("command %q, want %q", c.Command, want)
	}
	vars := env(c)
	if _, ok := vars[envSocketGroup]; ok {
		t.Errorf("the host's socket group reached the pod: %v", vars)
	}
	for k, v := range map[string]string{"A": "1", "VAULT_VERSION": "1.21.0", "PLUGIN_MULTIPLEX_GRPC": "true",
		"PLUGIN_UNIX_SOCKET_DIR": runtime.PluginSocketDir, "RC_CARRIER_ADMIT": "10.0.0.1", "RC_CARRIER_PORT": "5599"} {
		if vars[k] != v {
			t.Errorf("env %s=%q, want %q", k, vars[k], v)
		}
	}
	if pod.Labels[runtime.LabelManagedBy] != runtime.ManagedByThisPlugin || pod.Labels[runtime.LabelClusterID] != "c1" {
		t.Errorf("labels %v", pod.Labels)
	}
	if _, ok := pod.Labels[runtime.LabelOwner]; ok || pod.Annotations[runtime.LabelOwner] != "42:123" {
		t.Errorf("the owner (no label value) must be an annotation only: labels %v, annotations %v", pod.Labels, pod.Annotations)
	}
	np := objs.NetworkPolicy
	if np == nil || len(np.Spec.Egress) != 0 || len(np.Spec.PolicyTypes) != 2 || np.Spec.Ingress[0].From[0].IPBlock.CIDR != "10.0.0.1/32" ||
		np.Spec.PodSelector.MatchLabels[LabelPod] != pod.Labels[LabelPod] {
		t.Errorf("network=false: NetworkPolicy %+v", np)
	}

	spec.Runtime.Rootless, spec.Runtime.Network, spec.Host.MLock = true, true, true
	spec.Runtime.OCIRuntime, spec.Plugin.PullPolicy, spec.Plugin.ImageDigest = "runc", runtime.PullMissing, "sha256:"+strings.Repeat("a", 64)
	objs = preview(t, e, spec)
	c = objs.Pod.Spec.Containers[0]
	sc = c.SecurityContext
	if !*sc.RunAsNonRoot || *sc.RunAsUser == 0 || *sc.RunAsGroup == 0 || !*objs.Pod.Spec.SecurityContext.RunAsNonRoot {
		t.Errorf("rootless: %+v", sc)
	}
	if !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"IPC_LOCK"}) {
		t.Errorf("mlock: capabilities %+v", sc.Capabilities)
	}
	if objs.NetworkPolicy != nil {
		t.Errorf("network=true made a NetworkPolicy")
	}
	if objs.Pod.Spec.RuntimeClassName != nil {
		t.Errorf("the default handler runc needs no RuntimeClass, got %v", *objs.Pod.Spec.RuntimeClassName)
	}
	if c.Image != "registry.example/kv@sha256:"+strings.Repeat("a", 64) || c.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("image %s, pull policy %s", c.Image, c.ImagePullPolicy)
	}
	spec.Runtime.NanoCPUs, spec.Runtime.MemoryBytes = 0, 0
	if c := preview(t, e, spec).Pod.Spec.Containers[0]; len(c.Resources.Limits) != 0 {
		t.Errorf("no limits asked, got %v", c.Resources.Limits)
	}
}

func TestRefusals(t *testing.T) {
	e, _ := fakeEngine(t)
	spec := testSpec()
	spec.Runtime.CgroupParent = "/vault"
	for _, call := range []func() error{
		func() error { _, err := e.Preview(spec); return err },
		func() error { _, err := e.Container(spec); return err },
	} {
		err := call()
		if !errors.Is(err, runtime.ErrStartRefused) || !errors.Is(err, ErrUnsupported) ||
			!strings.Contains(err.Error(), "cgroup_parent") || !strings.Contains(err.Error(), "ResourceQuota") {
			t.Errorf("cgroup_parent: %v", err)
		}
	}
	spec = testSpec()
	spec.Plugin.Command = ""
	if _, err := e.Container(spec); !errors.Is(err, runtime.ErrStartRefused) || !strings.Contains(err.Error(), "command") {
		t.Errorf("no command: %v", err)
	}
	spec = testSpec()
	spec.Runtime.OCIRuntime = "kata"
	_, err := e.Preview(spec)
	if !errors.Is(err, runtime.ErrUnknownOCIRuntime) || !strings.Contains(err.Error(), "gvisor (handler runsc)") {
		t.Errorf("an OCI runtime no RuntimeClass has: %v", err)
	}
}

func TestFacts(t *testing.T) {
	e, _ := fakeEngine(t)
	f, err := e.Facts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.Runtimes, []string{"runc", "runsc"}) || f.DefaultRuntime != "runc" || !f.Runs("runsc") || f.Runs("kata") {
		t.Errorf("facts %+v", f)
	}
	if r := f.Refusal("kata"); !strings.Contains(r, "no RuntimeClass whose handler is kata") || !strings.Contains(r, "gvisor (handler runsc)") {
		t.Errorf("refusal: %s", r)
	}
	if err := e.Ping(context.Background()); err != nil {
		t.Errorf("ping: %v", err)
	}
}

func TestParse(t *testing.T) {
	for address, want := range map[string]Target{
		"kubernetes://plugins":                     {Namespace: "plugins"},
		"kubernetes://plugins/etc/rancher/k3s.yml": {Namespace: "plugins", Kubeconfig: "/etc/rancher/k3s.yml"},
		"kubernetes://plugins?carrier_image=registry.example.com:5000/team/carrier:0.1.0": {
			Namespace: "plugins", CarrierImage: "registry.example.com:5000/team/carrier:0.1.0"},
		"kubernetes://plugins/etc/k.yml?host_addresses=10.0.0.1,fd00::1&carrier_image=carrier@sha256:" + strings.Repeat("a", 64): {
			Namespace: "plugins", Kubeconfig: "/etc/k.yml", CarrierImage: "carrier@sha256:" + strings.Repeat("a", 64),
			HostAddresses: []string{"10.0.0.1", "fd00::1"}},
		"kubernetes://plugins?carrier_mount=init_container": {Namespace: "plugins", CarrierMount: MountInitContainer},
		"kubernetes://plugins?carrier_mount=image_volume":   {Namespace: "plugins", CarrierMount: MountImageVolume},
	} {
		got, err := Parse(address)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", address, got, err, want)
		}
	}
	for address, says := range map[string]string{
		"unix:///run/docker.sock":                              "does not start with kubernetes://",
		"kubernetes://":                                        "names no namespace",
		"kubernetes:///etc/kubeconfig":                         "names no namespace",
		"kubernetes://Plugins":                                 "not a Kubernetes namespace name",
		"kubernetes://plugins/":                                "names no kubeconfig",
		"kubernetes://plugins/a/../b":                          "not clean",
		"kubernetes://plugins//etc/k":                          "not clean",
		"kubernetes://plugins/etc/k#x":                         "fragment",
		"kubernetes://plugins/etc/k?x=1":                       `the setting "x", which is none of carrier_image, carrier_mount and host_addresses`,
		"kubernetes://plugins?carrier_mount=emptydir":          `carrier_mount "emptydir" is neither image_volume nor init_container`,
		"kubernetes://plugins?carrier_image=":                  "gives carrier_image no value",
		"kubernetes://plugins?carrier_image=a&carrier_image=b": "carrier_image 2 times: once",
		"kubernetes://plugins?carrier_image=Bad:Name":          `carrier_image "Bad:Name" is not an image reference`,
		"kubernetes://plugins?host_addresses=10.0.0.1,host":    `host_addresses: "host" is not an IP address`,
		"kubernetes://plugins?carrier_image=%zz":               "cannot be read",
	} {
		_, err := Parse(address)
		if !errors.Is(err, ErrAddress) || !strings.Contains(err.Error(), says) || !strings.Contains(err.Error(), "kubernetes://NAMESPACE") {
			t.Errorf("Parse(%q): %v, want it to say %q and the rule", address, err, says)
		}
	}
	if _, err := New("kubernetes://plugins"); err == nil || !strings.Contains(err.Error(), "in-cluster") {
		t.Errorf("New without in-cluster credentials: %v", err)
	}
}

// An engine that may not list RuntimeClasses (a namespaced Role) names the
// class after its handler, and none for the default handler.
func TestRuntimeClassUnlisted(t *testing.T) {
	e, client := fakeEngine(t)
	client.PrependReactor("list", "runtimeclasses", func(k8stesting.Action) (bool, kruntime.Object, error) {
		return true, nil, apierrors.NewForbidden(nodev1.Resource("runtimeclasses"), "", errors.New("a Role cannot grant it"))
	})
	spec := testSpec()
	spec.Runtime.OCIRuntime = "kata"
	if objs := preview(t, e, spec); *objs.Pod.Spec.RuntimeClassName != "kata" {
		t.Errorf("runtimeClassName %v", *objs.Pod.Spec.RuntimeClassName)
	}
	spec.Runtime.OCIRuntime = "runc"
	if objs := preview(t, e, spec); objs.Pod.Spec.RuntimeClassName != nil {
		t.Errorf("runtimeClassName %v for the default handler", *objs.Pod.Spec.RuntimeClassName)
	}
	if _, err := e.Facts(context.Background()); !errors.Is(err, runtime.ErrFactsWithheld) || !strings.Contains(err.Error(), "runtimeclasses.node.k8s.io") {
		t.Errorf("Facts: %v", err)
	}
}

// A registry's credentials reach the kubelet as a pull secret of the pod's
// name, made with the pod (only for a start that may pull) and deleted with
// it; the preview never shows them.
func TestPullSecret(t *testing.T) {
	e, client := fakeEngine(t)
	spec := testSpec()
	spec.Plugin.Image, spec.Plugin.PullPolicy = "registry.example:5000/team/kv", runtime.PullMissing
	spec.Auth = func(registry string) *runtime.RegistryAuth {
		if registry != "registry.example:5000" {
			t.Errorf("credentials asked for %q", registry)
		}
		return &runtime.RegistryAuth{Username: "u", Password: "p"}
	}
	p, err := e.Preview(spec)
	if err != nil {
		t.Fatal(err)
	}
	if pod := p.Request.(objects).Pod; len(pod.Spec.ImagePullSecrets) != 1 || pod.Spec.ImagePullSecrets[0].Name != pod.Name {
		t.Errorf("imagePullSecrets %v", pod.Spec.ImagePullSecrets)
	}
	c, _ := e.Container(spec)
	started := make(chan error, 1)
	go func() { started <- c.Start(context.Background()) }()
	name := setStatus(t, client, running)
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	secret, err := client.CoreV1().Secrets("plugins").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil || secret.Type != corev1.SecretTypeDockerConfigJson ||
		string(secret.Data[corev1.DockerConfigJsonKey]) != `{"auths":{"registry.example:5000":{"auth":"dTpw","password":"p","username":"u"}}}` {
		t.Fatalf("pull secret %+v, %v", secret, err)
	}
	if err := c.Kill(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Secrets("plugins").Get(context.Background(), name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the pull secret outlived its pod: %v", err)
	}
	spec.Plugin.PullPolicy = runtime.PullNever
	if pod := preview(t, e, spec).Pod; len(pod.Spec.ImagePullSecrets) != 0 {
		t.Errorf("pull policy never: imagePullSecrets %v", pod.Spec.ImagePullSecrets)
	}
}
