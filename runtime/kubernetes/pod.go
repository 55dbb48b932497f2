package kubernetes

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

const (
	// CarrierPort is the pod port the carrier listens on.
	CarrierPort = 5599
	// LabelPod names a plugin pod on itself and its NetworkPolicy, whose
	// selector it is.
	LabelPod = "vault-plugin-runtime-catalog/pod"

	pluginContainer   = "plugin"
	carrierInit       = "carrier"
	carrierVolumeName = "carrier"
	// carrierDir holds the carrier in the plugin container (the carrier's
	// image as a volume, or an emptyDir an init container fills: mount.go):
	// the plugin image need not have it.
	carrierDir    = "/.rc-carrier"
	carrierBinary = carrierDir + "/carrier"
	// nonRootID is the user and group of a rootless runtime's pods (the
	// distroless "nonroot" IDs): any non-zero ID would do.
	nonRootID = 65532
	// stopGrace is how long a pod the host stops has before SIGKILL:
	// go-plugin already asked its plugin to exit over its connection.
	stopGrace = 2
	// deleteGrace is the pod's own grace period, for a delete from outside
	// (kubectl delete pod): the carrier holds SIGTERM back while the host's
	// session is open, and the host sends its next requests to a new pod,
	// so a request in flight has up to the host's request limit (60 s) to
	// be answered. The host closes the session once they are, which ends
	// the pod long before.
	deleteGrace = 60
	// envSocketGroup is go-plugin's group for its socket: the host's group
	// means nothing in a pod, and the carrier runs as the plugin's user.
	envSocketGroup = "PLUGIN_UNIX_SOCKET_GROUP"
)

// ErrUnsupported is a runtime or registration field a pod cannot honour.
// It comes wrapped with runtime.ErrStartRefused: the runtime's fault (a 400).
var ErrUnsupported = errors.New("not possible on Kubernetes")

// refuse is what a spec asks that no pod can do, else nil.
func refuse(spec runtime.Spec) error {
	if err := CheckRuntime(spec.Runtime); err != nil {
		return fmt.Errorf("%w: %w", runtime.ErrStartRefused, err)
	}
	if spec.Plugin.Command == "" {
		return fmt.Errorf("%w: %w: the plugin %q has no command, and a pod must name it: the carrier starts the plugin "+
			"as its child, so the image's entrypoint is not used; register the plugin's command (the executable's path in the image)",
			runtime.ErrStartRefused, ErrUnsupported, spec.Plugin.Name)
	}
	return nil
}

// podName is a fresh pod name: short enough that runtime.Short keeps its
// random part, then the plugin's name as far as a DNS label allows.
func podName(plugin string) string {
	var b [5]byte
	rand.Read(b[:])
	name := "rc-" + hex.EncodeToString(b[:])[:9]
	if s := strings.Trim(nonDNS.ReplaceAllString(strings.ToLower(plugin), "-"), "-"); s != "" {
		name += "-" + s
	}
	if len(name) > 63 {
		name = strings.TrimRight(name[:63], "-")
	}
	return name
}

var nonDNS = regexp.MustCompile(`[^a-z0-9-]+`)

// objects is what a start makes: the pod and, without network, its policy.
type objects struct {
	Pod           *corev1.Pod                 `json:"pod"`
	NetworkPolicy *networkingv1.NetworkPolicy `json:"networkPolicy,omitempty"`
}

// build makes the pod (and NetworkPolicy) of spec, named name, under the
// RuntimeClass class ("" for none), its carrier mounted by mount and
// admitting admit.
func (e *Engine) build(spec runtime.Spec, name, class, mount string, admit []string) (objects, error) {
	if err := refuse(spec); err != nil {
		return objects{}, err
	}
	p, r, h := spec.Plugin, spec.Runtime, spec.Host
	meta := metav1.ObjectMeta{Name: name, Namespace: e.namespace, Labels: map[string]string{LabelPod: name}, Annotations: map[string]string{}}
	// Every one of runtime.Labels is an annotation (runtime.Orphaned reads
	// them there); those that are valid labels are labels too, for listing
	// (managed-by and the cluster ID always are).
	for k, v := range runtime.Labels(p, r, h) {
		meta.Annotations[k] = v
		if len(validation.IsQualifiedName(k)) == 0 && len(validation.IsValidLabelValue(v)) == 0 {
			meta.Labels[k] = v
		}
	}

	resources := corev1.ResourceRequirements{}
	if r.NanoCPUs > 0 || r.MemoryBytes > 0 {
		// Requests equal to limits: QoS Guaranteed, as a container's
		// limits are on Docker. CPU's precision is a millicore: rounded up.
		list := corev1.ResourceList{}
		if r.NanoCPUs > 0 {
			list[corev1.ResourceCPU] = *resource.NewMilliQuantity((r.NanoCPUs+999_999)/1_000_000, resource.DecimalSI)
		}
		if r.MemoryBytes > 0 {
			list[corev1.ResourceMemory] = *resource.NewQuantity(r.MemoryBytes, resource.BinarySI)
		}
		resources.Limits, resources.Requests = list, list.DeepCopy()
	}

	security := &corev1.SecurityContext{
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		AllowPrivilegeEscalation: ptr(!spec.Hardening.NoNewPrivileges),
		ReadOnlyRootFilesystem:   ptr(spec.Hardening.ReadonlyRootfs),
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if h.MLock {
		security.Capabilities.Add = []corev1.Capability{"IPC_LOCK"}
	}
	podSecurity := &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}
	if r.Rootless {
		security.RunAsNonRoot, security.RunAsUser, security.RunAsGroup = ptr(true), ptr(int64(nonRootID)), ptr(int64(nonRootID))
		podSecurity.RunAsNonRoot, podSecurity.RunAsUser, podSecurity.RunAsGroup = ptr(true), ptr(int64(nonRootID)), ptr(int64(nonRootID))
	}

	var env []corev1.EnvVar
	for _, kv := range runtime.ContainerEnv(p, h) {
		k, v, _ := strings.Cut(kv, "=")
		if k != envSocketGroup {
			env = append(env, corev1.EnvVar{Name: k, Value: v})
		}
	}
	env = append(env, corev1.EnvVar{Name: "RC_CARRIER_PORT", Value: strconv.Itoa(CarrierPort)},
		corev1.EnvVar{Name: "RC_CARRIER_ADMIT", Value: strings.Join(admit, ",")})

	pull := corev1.PullNever
	if p.PullPolicy == runtime.PullMissing {
		pull = corev1.PullIfNotPresent
	}
	mounts := []corev1.VolumeMount{{Name: carrierVolumeName, MountPath: carrierDir, ReadOnly: true}, {Name: "sockets", MountPath: runtime.PluginSocketDir}}
	carrier, initContainers := e.carrierVolume(mount, corev1.Container{Resources: resources, SecurityContext: security.DeepCopy()})
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: meta,
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			AutomountServiceAccountToken:  ptr(false),
			EnableServiceLinks:            ptr(false),
			TerminationGracePeriodSeconds: ptr(int64(deleteGrace)),
			SecurityContext:               podSecurity,
			Volumes: []corev1.Volume{
				carrier,
				{Name: "sockets", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			},
			InitContainers: initContainers,
			Containers: []corev1.Container{{
				Name: pluginContainer, Image: p.PullRef(), ImagePullPolicy: pull,
				Command:                  append([]string{carrierBinary, "run", p.Command}, p.Args...),
				Env:                      env,
				Ports:                    []corev1.ContainerPort{{Name: "carrier", ContainerPort: CarrierPort, Protocol: corev1.ProtocolTCP}},
				VolumeMounts:             mounts,
				Resources:                resources,
				SecurityContext:          security,
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			}},
		},
	}
	if class != "" {
		pod.Spec.RuntimeClassName = ptr(class)
	}
	if pullAuth(spec) != nil {
		pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: name}}
	}
	out := objects{Pod: pod}
	if !r.Network {
		out.NetworkPolicy = e.isolation(name, meta.Labels, admit)
	}
	return out, nil
}

// isolation is the NetworkPolicy of a pod without network: no egress at
// all, ingress only from the host's addresses to the carrier's port. Only a
// network plugin that enforces policies (Calico, Cilium, ...) enforces it.
func (e *Engine) isolation(name string, podLabels map[string]string, admit []string) *networkingv1.NetworkPolicy {
	labels := map[string]string{}
	for _, k := range []string{runtime.LabelManagedBy, runtime.LabelClusterID, LabelPod} {
		if v, ok := podLabels[k]; ok {
			labels[k] = v
		}
	}
	var from []networkingv1.NetworkPolicyPeer
	for _, a := range admit {
		cidr := a + "/32"
		if strings.Contains(a, ":") {
			cidr = a + "/128"
		}
		from = append(from, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr}})
	}
	port := intstr.FromInt32(CarrierPort)
	return &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.namespace, Labels: labels},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{LabelPod: name}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: from, Ports: []networkingv1.NetworkPolicyPort{{Protocol: ptr(corev1.ProtocolTCP), Port: &port}}}},
		},
	}
}

// pullAuth is the registry's credentials for a start that may pull, or nil.
func pullAuth(spec runtime.Spec) *runtime.RegistryAuth {
	if spec.Auth == nil || spec.Plugin.PullPolicy != runtime.PullMissing {
		return nil
	}
	return spec.Auth(runtime.RegistryOf(spec.Plugin.Image))
}

// pullSecret is the Secret that gives the kubelet the registry's
// credentials for the pod name, or nil when there are none: made with the
// pod and deleted with it.
func (e *Engine) pullSecret(spec runtime.Spec, name string, podLabels map[string]string) *corev1.Secret {
	auth := pullAuth(spec)
	if auth == nil {
		return nil
	}
	registry := runtime.RegistryOf(spec.Plugin.Image)
	config, _ := json.Marshal(map[string]any{"auths": map[string]any{registry: map[string]string{
		"username": auth.Username, "password": auth.Password,
		"auth": base64.StdEncoding.EncodeToString([]byte(auth.Username + ":" + auth.Password)),
	}}})
	labels := map[string]string{}
	for _, k := range []string{runtime.LabelManagedBy, runtime.LabelClusterID, LabelPod} {
		if v, ok := podLabels[k]; ok {
			labels[k] = v
		}
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.namespace, Labels: labels},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: config},
	}
}

// Placeholders of a preview.
const (
	placeholderName  = "<pod name, made at start>"
	placeholderAdmit = "<this host's addresses when the pod is made>"
)

// Preview is the pod (and NetworkPolicy) a start of spec creates. The
// RuntimeClass is looked up as a start does, briefly; when the cluster does
// not answer it is shown as a placeholder.
func (e *Engine) Preview(spec runtime.Spec) (runtime.Preview, error) {
	if err := refuse(spec); err != nil {
		return runtime.Preview{}, err
	}
	setAtStart := []string{runtime.SetAtStartCert, "metadata.name and the pod label " + LabelPod + " (a fresh name)",
		"RC_CARRIER_ADMIT (the addresses the carrier admits: " + placeholderAdmit[1:len(placeholderAdmit)-1] + ")"}
	if pullAuth(spec) != nil {
		setAtStart = append(setAtStart, "imagePullSecrets (a Secret of the pod's name with the registry's credentials, made with the pod and deleted with it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	oci := spec.Runtime.EffectiveOCIRuntime()
	class, err := e.runtimeClassFor(ctx, oci)
	switch {
	case errors.Is(err, runtime.ErrUnknownOCIRuntime):
		return runtime.Preview{}, err
	case err != nil:
		class = "<the RuntimeClass whose handler is " + oci + ">"
		setAtStart = append(setAtStart, fmt.Sprintf("runtimeClassName (the cluster did not answer: %v)", err))
	}
	mount, err := e.carrierMountFor(ctx)
	if err != nil {
		setAtStart = append(setAtStart, fmt.Sprintf("the carrier's mount (%s, by the API server's version, or %s; the cluster did not answer: %v)",
			MountImageVolume, MountInitContainer, err))
	}
	admit := []string{placeholderAdmit}
	if e.fixedAddresses {
		admit, _ = e.hostAddresses()
	}
	objs, err := e.build(spec, placeholderName, class, mount, admit)
	if err != nil {
		return runtime.Preview{}, err
	}
	return runtime.Preview{Request: objs, SetAtStart: setAtStart}, nil
}

func ptr[T any](v T) *T { return &v }
