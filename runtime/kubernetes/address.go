package kubernetes

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"strings"

	"github.com/distribution/reference"

	"k8s.io/apimachinery/pkg/util/validation"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Scheme is how a runtime's engine names a Kubernetes cluster.
const Scheme = "kubernetes://"

// IsAddress reports whether a runtime's engine names a Kubernetes cluster
// rather than a Docker Engine API socket.
func IsAddress(address string) bool { return strings.HasPrefix(address, Scheme) }

// ErrAddress is an engine address this package cannot read.
var ErrAddress = errors.New("not a Kubernetes engine address")

// Target is what an engine address names: the namespace the plugin pods go
// to, the kubeconfig that reaches the cluster ("" for in-cluster
// credentials), and the settings after a "?": carrier_image (the carrier's
// image, DefaultCarrierImage when not given), carrier_mount (how the
// carrier reaches a pod: MountImageVolume or MountInitContainer; chosen by
// the cluster's version when not given) and host_addresses (the addresses
// the carrier admits, comma-separated; this host's own when not given).
type Target struct {
	Namespace, Kubeconfig string
	CarrierImage          string
	CarrierMount          string
	HostAddresses         []string
}

// addressRule is the address's form, for its errors.
const addressRule = "kubernetes://NAMESPACE for in-cluster credentials, or kubernetes://NAMESPACE/abs/path/to/kubeconfig; " +
	"then, optionally, ?carrier_image=IMAGE&carrier_mount=" + MountImageVolume + "|" + MountInitContainer + "&host_addresses=IP,IP"

// Parse reads kubernetes://NAMESPACE[/abs/path/to/kubeconfig][?SETTINGS].
func Parse(address string) (Target, error) {
	bad := func(format string, args ...any) (Target, error) {
		return Target{}, fmt.Errorf("%w: %q "+format+" (%s)", append(append([]any{ErrAddress, address}, args...), addressRule)...)
	}
	rest, ok := strings.CutPrefix(address, Scheme)
	if !ok {
		return bad("does not start with %s", Scheme)
	}
	rest, query, hasQuery := strings.Cut(rest, "?")
	namespace, file, hasFile := strings.Cut(rest, "/")
	if namespace == "" {
		return bad("names no namespace")
	}
	if errs := validation.IsDNS1123Label(namespace); len(errs) > 0 {
		return bad("the namespace %q is not a Kubernetes namespace name (%s)", namespace, strings.Join(errs, "; "))
	}
	t := Target{Namespace: namespace}
	if hasFile {
		t.Kubeconfig = "/" + file
		switch {
		case file == "":
			return bad("ends in a slash but names no kubeconfig")
		case strings.Contains(file, "#"):
			return bad("the kubeconfig path carries a fragment")
		case path.Clean(t.Kubeconfig) != t.Kubeconfig:
			return bad("the kubeconfig path %q is not clean (no //, . or .. parts: %s)", t.Kubeconfig, path.Clean(t.Kubeconfig))
		}
	}
	if !hasQuery {
		return t, nil
	}
	settings, err := url.ParseQuery(query)
	if err != nil {
		return bad("its settings after ? cannot be read: %v", err)
	}
	for key, values := range settings {
		switch {
		case len(values) > 1:
			return bad("gives %s %d times: once, please", key, len(values))
		case values[0] == "":
			return bad("gives %s no value", key)
		}
		value := values[0]
		switch key {
		case "carrier_image":
			if _, err := reference.ParseNormalizedNamed(value); err != nil {
				return bad("carrier_image %q is not an image reference (registry.example.com/team/carrier:0.1.0, or with @sha256:...)", value)
			}
			t.CarrierImage = value
		case "carrier_mount":
			if value != MountImageVolume && value != MountInitContainer {
				return bad("carrier_mount %q is neither %s nor %s", value, MountImageVolume, MountInitContainer)
			}
			t.CarrierMount = value
		case "host_addresses":
			for _, field := range strings.Split(value, ",") {
				addr, err := netip.ParseAddr(field)
				if err != nil {
					return bad("host_addresses: %q is not an IP address", field)
				}
				t.HostAddresses = append(t.HostAddresses, addr.String())
			}
		default:
			return bad("has the setting %q, which is none of carrier_image, carrier_mount and host_addresses", key)
		}
	}
	return t, nil
}

// New connects to the engine at address (Parse): in-cluster credentials or
// the kubeconfig it names, with its settings; opts come after them. Nothing
// is asked of the cluster yet.
func New(address string, opts ...Option) (*Engine, error) {
	t, err := Parse(address)
	if err != nil {
		return nil, err
	}
	var config *rest.Config
	if t.Kubeconfig == "" {
		config, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("the engine %s asks for in-cluster credentials, and there are none here (%v): "+
				"outside a pod, name a kubeconfig: %s%s/abs/path/to/kubeconfig", address, err, Scheme, t.Namespace)
		}
	} else {
		config, err = clientcmd.BuildConfigFromFlags("", t.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("the engine %s: reading the kubeconfig %s: %w", address, t.Kubeconfig, err)
		}
		withFreshToken(config, t.Kubeconfig)
	}
	config.UserAgent = "vault-plugin-runtime-catalog"
	client, err := k8s.NewForConfig(config)
	if err != nil {
		return nil, fmt.Errorf("the engine %s: %w", address, err)
	}
	var settings []Option
	if t.CarrierImage != "" {
		settings = append(settings, WithCarrierImage(t.CarrierImage))
	}
	if t.CarrierMount != "" {
		settings = append(settings, WithCarrierMount(t.CarrierMount))
	}
	if len(t.HostAddresses) > 0 {
		settings = append(settings, WithHostAddresses(t.HostAddresses...))
	}
	return NewWithClient(address, t.Namespace, client, append(settings, opts...)...), nil
}

// NewWithClient is the engine at address using client (client-go's fake
// clientset, in tests), with its pods in namespace.
func NewWithClient(address, namespace string, client k8s.Interface, opts ...Option) *Engine {
	e := &Engine{
		address: address, namespace: namespace, client: client,
		carrierImage: DefaultCarrierImage, defaultHandler: DefaultHandler, hostAddresses: interfaceAddresses,
	}
	for _, opt := range opts {
		opt(e)
	}
	return e
}

// Option sets what an engine cannot learn from its address.
type Option func(*Engine)

// WithCarrierImage names the carrier's image (DefaultCarrierImage
// otherwise), which every plugin pod mounts or copies the carrier from.
func WithCarrierImage(ref string) Option { return func(e *Engine) { e.carrierImage = ref } }

// WithCarrierMount fixes how the carrier reaches a plugin pod
// (MountImageVolume or MountInitContainer), rather than by the cluster's
// version (carrierMountFor).
func WithCarrierMount(mount string) Option { return func(e *Engine) { e.carrierMount = mount } }

// WithDefaultHandler names the nodes' default OCI runtime handler (the one a
// pod without a RuntimeClass gets; DefaultHandler otherwise): the API does
// not say it.
func WithDefaultHandler(handler string) Option { return func(e *Engine) { e.defaultHandler = handler } }

// WithHostAddresses fixes the addresses the carrier admits, for a host whose
// connections reach the pods translated (NAT): by default they are this
// host's own interface addresses when each pod is made.
func WithHostAddresses(addrs ...string) Option {
	fixed := append([]string(nil), addrs...)
	return func(e *Engine) {
		e.hostAddresses = func() ([]string, error) { return fixed, nil }
		e.fixedAddresses = true
	}
}
