package kubernetes

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// container is one start of a plugin as a pod: go-plugin's runner for it.
type container struct {
	e     *Engine
	spec  runtime.Spec
	state *runtime.State
	name  string
	mount string // how its pod gets the carrier (mount.go)
	// mountTrouble is the kubelet's latest FailedMount of the pod, if any.
	mountTrouble string

	// go-plugin reads the handshake line from stdout and logs stderr; the
	// pod's log (stdout and stderr merged) is split by the line's shape.
	stdoutR, stderrR *io.PipeReader
	stdoutW, stderrW *io.PipeWriter
	outputOnce       sync.Once
	outputDone       chan struct{}

	mu     sync.Mutex
	pod    *corev1.Pod // the newest seen
	podIP  string
	change chan struct{} // closed and replaced at each pod seen
	// gone is closed once the pod is seen deleted.
	gone     chan struct{}
	goneOnce *sync.Once
	exitOnce *sync.Once
	stop     context.CancelFunc // the watch and the log stream
	// gen counts the pods made (a start may make a second): what a watch
	// of an earlier one sees is ignored. discarded is set once the pod of
	// a failed start is being deleted: its end is no plugin's exit.
	gen       int
	discarded bool
	// tunnels are the control connections of the tunnels to the host's
	// broker (tunnel.go), closed with the pod.
	tunnels       []net.Conn
	tunnelsClosed bool
}

// Container prepares a start of spec; nothing reaches the cluster before
// Start. What no pod can do is refused here.
func (e *Engine) Container(spec runtime.Spec) (runtime.Container, error) {
	if err := refuse(spec); err != nil {
		return nil, err
	}
	c := &container{e: e, spec: spec, state: runtime.NewState(spec), outputDone: make(chan struct{}),
		change: make(chan struct{}), gone: make(chan struct{}), goneOnce: &sync.Once{}, exitOnce: &sync.Once{}}
	c.stdoutR, c.stdoutW = io.Pipe()
	c.stderrR, c.stderrW = io.Pipe()
	c.stop = func() {}
	return c, nil
}

func (c *container) State() *runtime.State          { return c.state }
func (c *container) Stdout() io.ReadCloser          { return c.stdoutR }
func (c *container) Stderr() io.ReadCloser          { return c.stderrR }
func (c *container) ID() string                     { return c.state.ID() }
func (c *container) Wait(ctx context.Context) error { return c.state.Wait(ctx) }

func (c *container) Name() string {
	return fmt.Sprintf("pod %s/%s (%s)", c.e.namespace, c.name, c.spec.What())
}

// closeOutput ends go-plugin's pipes and marks the output read.
func (c *container) closeOutput() {
	c.outputOnce.Do(func() {
		c.stdoutW.Close()
		c.stderrW.Close()
		close(c.outputDone)
	})
}

// Start creates the pod and waits until its plugin container runs and the
// pod has an IP, or says the cluster's reason it will not. A pod that fails
// to start is deleted before Start returns.
func (c *container) Start(ctx context.Context) error {
	err := c.start(ctx, time.Now(), true)
	if err != nil {
		c.closeOutput()
		c.log().Debug("the plugin pod did not start", "pod", c.name, "error", err)
	}
	return err
}

func (c *container) log() hclog.Logger {
	if c.spec.Logger == nil {
		return hclog.NewNullLogger()
	}
	return c.spec.Logger
}

// start makes a pod and waits for it; began is when the first was asked
// for, and the time of a first pod made again is counted as starting.
func (c *container) start(ctx context.Context, began time.Time, firstTry bool) error {
	select {
	case <-c.state.Abandoned():
		return fmt.Errorf("%w: before the pod was made", runtime.ErrStartAbandoned)
	default:
	}
	oci := c.spec.Runtime.EffectiveOCIRuntime()
	class, err := c.e.runtimeClassFor(ctx, oci)
	if err != nil {
		return c.state.Refused(err)
	}
	admit, err := c.e.hostAddresses()
	if err != nil {
		return fmt.Errorf("the addresses the carrier is to admit: %w", err)
	}
	mount, _ := c.e.carrierMountFor(ctx) // an init container when the cluster does not say
	name := podName(c.spec.Plugin.Name)
	c.mu.Lock()
	c.name, c.mount = name, mount
	gen := c.gen
	c.mu.Unlock()
	objs, err := c.e.build(c.spec, name, class, mount, admit)
	if err != nil {
		return c.state.Refused(err)
	}
	creating := time.Now()
	if objs.NetworkPolicy != nil {
		if _, err := c.e.client.NetworkingV1().NetworkPolicies(c.e.namespace).Create(ctx, objs.NetworkPolicy, metav1.CreateOptions{}); err != nil {
			return c.state.Refused(createRefused("NetworkPolicy", c.e.namespace, c.name, err))
		}
	}
	if secret := c.e.pullSecret(c.spec, name, objs.Pod.Labels); secret != nil {
		if _, err := c.e.client.CoreV1().Secrets(c.e.namespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
			c.e.deleteCompanions(context.Background(), name)
			return c.state.Refused(createRefused("pull secret", c.e.namespace, c.name, err))
		}
	}
	created, err := c.e.client.CoreV1().Pods(c.e.namespace).Create(ctx, objs.Pod, metav1.CreateOptions{})
	if err != nil {
		c.e.deletePod(context.Background(), c.name, 0)
		return c.state.Refused(fmt.Errorf("%w%s", createRefused("pod", c.e.namespace, c.name, err), mountHint(mount, err.Error())))
	}
	c.state.Created = time.Since(creating)
	c.state.SetID(c.name)
	c.log().Debug("plugin pod created", "pod", name, "class", class, "admit", admit)
	c.state.WatchingOOM(true) // the kubelet reports a container's OOM kill as its reason
	watchCtx, stop := context.WithCancel(context.Background())
	c.mu.Lock()
	c.stop = stop
	c.mu.Unlock()
	go c.watch(watchCtx, gen, name, created)

	ip, err := c.awaitRunning(ctx)
	if err != nil {
		c.discard()
		return c.state.Refused(err)
	}
	c.state.Started = time.Since(began) - c.state.Created
	c.log().Debug("plugin pod running", "pod", name, "ip", ip, "after", time.Since(began))
	if err := c.checkImage(); err != nil {
		c.discard()
		return c.state.Refused(err)
	}
	if !c.e.fixedAddresses && !c.ended() {
		// The host's address towards the pod may be new since the pod was
		// made (a node's pod bridge is made with its first pod): the
		// carrier would refuse the host, so the pod is made again, once.
		// (A plugin that ended already is left to tell its exit.)
		if src, err := sourceFor(ip); err == nil && !slices.Contains(admit, src) {
			c.discard()
			if firstTry {
				c.log().Debug("plugin pod made again: the host reaches it from an address it did not admit", "pod", name, "from", src)
				c.reset()
				return c.start(ctx, began, false)
			}
			return c.state.Refused(fmt.Errorf("%w: this host reaches the pod %s from %s, which is none of its addresses (%s): "+
				"its connections are translated on the way (NAT): name the addresses the pods see it from in the engine's "+
				"host_addresses (%s%s/...?host_addresses=IP,IP)",
				runtime.ErrStartRefused, c.name, src, strings.Join(admit, ", "), Scheme, c.e.namespace))
		}
	}
	c.mu.Lock()
	c.podIP = ip
	c.mu.Unlock()
	go c.follow(watchCtx)
	go c.abandonBeforeHandshake()
	return nil
}

// reset readies the container for a second pod after the first was
// discarded.
func (c *container) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.discarded = false
	c.pod, c.gone, c.goneOnce, c.exitOnce = nil, make(chan struct{}), &sync.Once{}, &sync.Once{}
	c.tunnels, c.tunnelsClosed = nil, false
	c.mountTrouble = ""
}

// discard deletes a pod whose start failed, at once, and waits (briefly)
// until it is gone: a failed start leaves nothing behind.
func (c *container) discard() {
	c.mu.Lock()
	c.discarded = true
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	began := time.Now()
	c.e.deletePod(ctx, c.name, 0)
	select {
	case <-c.goneCh():
		c.log().Debug("plugin pod deleted", "pod", c.name, "after", time.Since(began))
	case <-ctx.Done():
	}
	c.stopWatching()
	c.state.SetID("")
}

func (c *container) stopWatching() {
	c.mu.Lock()
	stop := c.stop
	c.mu.Unlock()
	stop()
	c.closeTunnels()
}

func (c *container) goneCh() chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gone
}

// awaitRunning waits until the plugin container has started (or already
// ended) and the pod has an IP; the cluster's reason when it will not.
func (c *container) awaitRunning(ctx context.Context) (string, error) {
	events := time.NewTicker(500 * time.Millisecond)
	defer events.Stop()
	// A pull is bounded by its own limit, not the start's: once the start's
	// limit passes during a pull, the wait goes on to the pull's.
	limit, pullTimeout := ctx.Done(), c.spec.PullTimeout
	if pullTimeout <= 0 {
		pullTimeout = runtime.DefaultPullTimeout
	}
	var pullingSince time.Time
	var pullLimit <-chan time.Time
	for {
		c.mu.Lock()
		pod, change, gone := c.pod, c.change, c.gone
		c.mu.Unlock()
		if pod != nil {
			if err := startFailure(pod, c.e.carrierImage, c.mount); err != nil {
				return "", err
			}
			if ip, ok := started(pod); ok {
				if !pullingSince.IsZero() {
					c.state.Pulled = time.Since(pullingSince)
				}
				return ip, nil
			}
		}
		select {
		case <-change:
		case <-gone:
			// Someone else's doing, not the registration's: a 502, and the
			// host may try again.
			return "", fmt.Errorf("the pod %s/%s was deleted from outside before it ran", c.e.namespace, c.name)
		case <-events.C:
			pulling, err := c.eventFailure()
			if err != nil {
				return "", err
			}
			if pulling && pullingSince.IsZero() {
				pullingSince = time.Now()
			}
		case <-c.state.Abandoned():
			return "", fmt.Errorf("%w: the pod %s/%s was deleted before it ran", runtime.ErrStartAbandoned, c.e.namespace, c.name)
		case <-c.state.GivenUp():
			return "", fmt.Errorf("the start was given up: the pod %s/%s is deleted", c.e.namespace, c.name)
		case <-limit:
			if pullingSince.IsZero() { // asked once more: the events are read only now and then
				if pulling, err := c.eventFailure(); err != nil {
					return "", err
				} else if pulling {
					pullingSince = time.Now()
				}
			}
			if pullingSince.IsZero() {
				c.mu.Lock()
				trouble := c.mountTrouble
				c.mu.Unlock()
				if trouble != "" {
					trouble = "; the kubelet says FailedMount: " + trouble + mountAdvice(c.mount)
				}
				return "", fmt.Errorf("the pod %s/%s did not run in time (%s%s): %w", c.e.namespace, c.name, describe(pod), trouble, ctx.Err())
			}
			limit, pullLimit = nil, time.After(pullTimeout-time.Since(pullingSince))
		case <-pullLimit:
			return "", fmt.Errorf("%w: the kubelet's pull for the pod %s/%s did not finish within %s (it may go on with it; a later start uses the image once there): %s",
				runtime.ErrPullTimeout, c.e.namespace, c.name, pullTimeout, describe(pod))
		}
	}
}

// started is the pod's IP once its plugin container has started.
func started(pod *corev1.Pod) (string, bool) {
	st := containerStatus(pod.Status.ContainerStatuses, pluginContainer)
	if pod.Status.PodIP == "" || st == nil || (st.State.Running == nil && st.State.Terminated == nil) {
		return "", false
	}
	return pod.Status.PodIP, true
}

func containerStatus(list []corev1.ContainerStatus, name string) *corev1.ContainerStatus {
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

// Diagnose says where the pod stands, for go-plugin's failure messages.
func (c *container) Diagnose(context.Context) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("pod %s/%s: %s", c.e.namespace, c.name, describe(c.pod))
}

// PluginToHost maps the plugin's socket in the pod to the carrier's port.
func (c *container) PluginToHost(network, addr string) (string, string, error) {
	c.mu.Lock()
	ip := c.podIP
	c.mu.Unlock()
	if network != "unix" || !strings.HasPrefix(addr, runtime.PluginSocketDir+"/") {
		return "", "", fmt.Errorf("the plugin listens on %s %s, not on a socket in %s, where the carrier looks", network, addr, runtime.PluginSocketDir)
	}
	if ip == "" {
		return "", "", fmt.Errorf("the pod %s/%s has no IP", c.e.namespace, c.name)
	}
	return "tcp", net.JoinHostPort(ip, strconv.Itoa(CarrierPort)), nil
}
