package kubernetes

import (
	"errors"
	"fmt"
	"path"
	"strings"

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

// Parse reads kubernetes://NAMESPACE[/abs/path/to/kubeconfig]: the namespace
// the plugin pods go to and, when given, the kubeconfig that reaches the
// cluster ("" for in-cluster credentials).
func Parse(address string) (namespace, kubeconfig string, err error) {
	const rule = "kubernetes://NAMESPACE for in-cluster credentials, or kubernetes://NAMESPACE/abs/path/to/kubeconfig"
	rest, ok := strings.CutPrefix(address, Scheme)
	if !ok {
		return "", "", fmt.Errorf("%w: %q does not start with %s (%s)", ErrAddress, address, Scheme, rule)
	}
	namespace, file, hasFile := strings.Cut(rest, "/")
	if namespace == "" {
		return "", "", fmt.Errorf("%w: %q names no namespace (%s)", ErrAddress, address, rule)
	}
	if errs := validation.IsDNS1123Label(namespace); len(errs) > 0 {
		return "", "", fmt.Errorf("%w: %q: the namespace %q is not a Kubernetes namespace name (%s) (%s)",
			ErrAddress, address, namespace, strings.Join(errs, "; "), rule)
	}
	if !hasFile {
		return namespace, "", nil
	}
	kubeconfig = "/" + file
	switch {
	case file == "":
		return "", "", fmt.Errorf("%w: %q ends in a slash but names no kubeconfig (%s)", ErrAddress, address, rule)
	case strings.ContainsAny(file, "?#"):
		return "", "", fmt.Errorf("%w: %q: the kubeconfig path carries a query or fragment (%s)", ErrAddress, address, rule)
	case path.Clean(kubeconfig) != kubeconfig:
		return "", "", fmt.Errorf("%w: %q: the kubeconfig path %q is not clean (no //, . or .. parts: %s) (%s)",
			ErrAddress, address, kubeconfig, path.Clean(kubeconfig), rule)
	}
	return namespace, kubeconfig, nil
}

// New connects to the engine at address (Parse): in-cluster credentials or
// the kubeconfig it names. Nothing is asked of the cluster yet.
func New(address string, opts ...Option) (*Engine, error) {
	namespace, kubeconfig, err := Parse(address)
	if err != nil {
		return nil, err
	}
	var config *rest.Config
	if kubeconfig == "" {
		config, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("the engine %s asks for in-cluster credentials, and there are none here (%v): "+
				"outside a pod, name a kubeconfig: %s%s/abs/path/to/kubeconfig", address, err, Scheme, namespace)
		}
	} else {
		config, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("the engine %s: reading the kubeconfig %s: %w", address, kubeconfig, err)
		}
		withFreshToken(config, kubeconfig)
	}
	config.UserAgent = "vault-plugin-runtime-catalog"
	client, err := k8s.NewForConfig(config)
	if err != nil {
		return nil, fmt.Errorf("the engine %s: %w", address, err)
	}
	return NewWithClient(address, namespace, client, opts...), nil
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
// otherwise), which the init container of every plugin pod runs.
func WithCarrierImage(ref string) Option { return func(e *Engine) { e.carrierImage = ref } }

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
