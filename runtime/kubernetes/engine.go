package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	k8s "k8s.io/client-go/kubernetes"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

const (
	// DefaultCarrierImage is the carrier's image (./carrier, FROM scratch,
	// the program at /carrier), unless WithCarrierImage names another.
	DefaultCarrierImage = "vault-plugin-runtime-catalog/carrier:" + CarrierVersion
	// CarrierVersion is the carrier's, as its image is tagged; it changes
	// with what the carrier and this engine say to each other (0.2.0: the
	// tunnels to the host's broker; 0.3.0: the container's figures, and
	// the session told by its first byte).
	CarrierVersion = "0.3.0"

	// DefaultHandler is the OCI runtime handler a pod without a
	// RuntimeClass gets, on containerd and CRI-O alike, unless
	// WithDefaultHandler names another: the API does not say it.
	DefaultHandler = "runc"
)

// Engine is a namespace of a Kubernetes cluster running plugin pods.
type Engine struct {
	address, namespace string
	client             k8s.Interface
	carrierImage       string
	// carrierMount is the address's carrier_mount ("" to learn it from
	// the cluster's version: learnedMount, under mu).
	carrierMount   string
	defaultHandler string
	mu             sync.Mutex
	learnedMount   string
	learnedAt      time.Time
	// hostAddresses are the addresses the carrier admits; fixedAddresses is
	// set when an option gave them (nothing to learn again).
	hostAddresses  func() ([]string, error)
	fixedAddresses bool
}

var _ runtime.Engine = (*Engine)(nil)

// Address is the engine's address, as runtimes name it.
func (e *Engine) Address() string { return e.address }

// Namespace is where its pods go.
func (e *Engine) Namespace() string { return e.namespace }

// Close releases nothing: client-go's connections close with the process.
func (e *Engine) Close() error { return nil }

// Ping asks the API server its version: the cheapest call every client may
// make.
func (e *Engine) Ping(ctx context.Context) error {
	_, err := e.serverVersion(ctx)
	return err
}

// Unreachable reports whether err is the API server not answering at all:
// nothing listens, no route, no name, no connection in time.
func (e *Engine) Unreachable(err error) bool {
	if err == nil {
		return false
	}
	var op *net.OpError
	var dns *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return true
	case errors.As(err, &op) && op.Op == "dial", errors.As(err, &dns):
		return true
	}
	return false
}

// runtimeClasses are the cluster's RuntimeClasses as handler → class names.
func (e *Engine) runtimeClasses(ctx context.Context) (map[string][]string, error) {
	list, err := e.client.NodeV1().RuntimeClasses().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	byHandler := map[string][]string{}
	for _, rc := range list.Items {
		byHandler[rc.Handler] = append(byHandler[rc.Handler], rc.Name)
	}
	for _, names := range byHandler {
		sort.Strings(names)
	}
	return byHandler, nil
}

// Facts is what the cluster says of its OCI runtimes: the handlers of its
// RuntimeClasses and the nodes' default handler, which needs none.
func (e *Engine) Facts(ctx context.Context) (runtime.EngineFacts, error) {
	byHandler, err := e.runtimeClasses(ctx)
	if apierrors.IsForbidden(err) {
		// A namespaced Role cannot grant it; a pod then names the class
		// after its handler (runtimeClassFor).
		return runtime.EngineFacts{}, fmt.Errorf("%w: the cluster at %s does not let this plugin list its RuntimeClasses (%v); "+
			"a pod names the RuntimeClass after its handler", runtime.ErrFactsWithheld, e.address, err)
	}
	if err != nil {
		return runtime.EngineFacts{}, fmt.Errorf("listing the RuntimeClasses of %s (the engine needs list on runtimeclasses.node.k8s.io): %w", e.address, err)
	}
	runtimes := []string{e.defaultHandler}
	for handler := range byHandler {
		if !slices.Contains(runtimes, handler) {
			runtimes = append(runtimes, handler)
		}
	}
	sort.Strings(runtimes)
	return runtime.EngineFacts{
		Address: e.address, Runtimes: runtimes, DefaultRuntime: e.defaultHandler,
		Refuse: func(oci string) string { return e.refusal(oci, byHandler) },
	}, nil
}

// refusal says, in the cluster's terms, that no RuntimeClass runs oci.
func (e *Engine) refusal(oci string, byHandler map[string][]string) string {
	var classes []string
	for handler, names := range byHandler {
		for _, name := range names {
			classes = append(classes, fmt.Sprintf("%s (handler %s)", name, handler))
		}
	}
	sort.Strings(classes)
	has := "no RuntimeClass"
	if len(classes) > 0 {
		has = "the RuntimeClasses " + strings.Join(classes, ", ")
	}
	return fmt.Sprintf("the cluster at %s has no RuntimeClass whose handler is %s; it has %s, and the nodes' default handler %s (which needs none)",
		e.address, oci, has, e.defaultHandler)
}

// runtimeClassFor is the RuntimeClass a pod under the OCI runtime oci names:
// none for the nodes' default handler, else the class whose handler is oci
// (the first by name when several are). RuntimeClasses are cluster-wide, and
// an engine held to a namespaced Role may not list them: it then names the
// class after its handler, as clusters commonly do (runsc, kata), and a
// class that does not exist is the API server's refusal of the pod.
func (e *Engine) runtimeClassFor(ctx context.Context, oci string) (string, error) {
	byHandler, err := e.runtimeClasses(ctx)
	switch {
	case apierrors.IsForbidden(err) && oci == e.defaultHandler:
		return "", nil
	case apierrors.IsForbidden(err):
		return oci, nil
	case err != nil:
		return "", fmt.Errorf("listing the RuntimeClasses of %s: %w", e.address, err)
	}
	if names := byHandler[oci]; len(names) > 0 {
		return names[0], nil
	}
	if oci == e.defaultHandler {
		return "", nil
	}
	return "", fmt.Errorf("%w: %s", runtime.ErrUnknownOCIRuntime, e.refusal(oci, byHandler))
}

// ReapOrphans deletes the plugin pods of cluster clusterID whose owner, a
// process of this machine, is gone (runtime.Orphaned, read from the pod's
// annotations: the owner is no label value), with their NetworkPolicies.
func (e *Engine) ReapOrphans(ctx context.Context, clusterID string) ([]string, error) {
	selector := labels.SelectorFromSet(labels.Set{runtime.LabelManagedBy: runtime.ManagedByThisPlugin, runtime.LabelClusterID: clusterID})
	list, err := e.client.CoreV1().Pods(e.namespace).List(ctx, metav1.ListOptions{LabelSelector: selector.String()})
	if err != nil {
		return nil, fmt.Errorf("listing the plugin pods in %s: %w", e.address, err)
	}
	var reaped []string
	var errs []error
	for _, pod := range list.Items {
		if !runtime.Orphaned(pod.Annotations) {
			continue
		}
		if err := e.deletePod(ctx, pod.Name, 0); err != nil {
			errs = append(errs, err)
			continue
		}
		reaped = append(reaped, pod.Name)
	}
	return reaped, errors.Join(errs...)
}

// deletePod deletes a plugin pod and what was made with it (its
// NetworkPolicy, its pull secret), if there are; grace is the pod's
// termination grace period in seconds.
func (e *Engine) deletePod(ctx context.Context, name string, grace int64) error {
	err := e.client.CoreV1().Pods(e.namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &grace})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the pod %s/%s: %w", e.namespace, name, err)
	}
	return e.deleteCompanions(ctx, name)
}

// deleteCompanions deletes a pod's NetworkPolicy and pull secret. A pull
// secret is made only for a registry's credentials, and an engine that
// never needs one may not be allowed secrets at all.
func (e *Engine) deleteCompanions(ctx context.Context, name string) error {
	err := e.client.NetworkingV1().NetworkPolicies(e.namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the NetworkPolicy %s/%s: %w", e.namespace, name, err)
	}
	err = e.client.CoreV1().Secrets(e.namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsForbidden(err) {
		return fmt.Errorf("deleting the pull secret %s/%s: %w", e.namespace, name, err)
	}
	return nil
}

// interfaceAddresses are this host's unicast addresses but loopback's: a
// connection from the host to a pod comes from one of them, unless
// something translates it on the way (WithHostAddresses).
func interfaceAddresses() ([]string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, a := range addrs {
		prefix, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ip := prefix.Addr().Unmap()
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsMulticast() || ip.IsUnspecified() {
			continue
		}
		out = append(out, ip.String())
	}
	if len(out) == 0 {
		return nil, errors.New("this host has no address but loopback's")
	}
	return out, nil
}

// sourceFor is the address this host's connections to ip leave from, by its
// routes (a UDP socket's connect sends nothing).
func sourceFor(ip string) (string, error) {
	conn, err := net.Dial("udp", net.JoinHostPort(ip, "9"))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	addr, err := netip.ParseAddrPort(conn.LocalAddr().String())
	if err != nil {
		return "", err
	}
	return addr.Addr().Unmap().String(), nil
}
