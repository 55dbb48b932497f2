package kubernetes

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

func plugPod(name, cluster string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "plugins", Annotations: annotations,
		Labels: map[string]string{runtime.LabelManagedBy: runtime.ManagedByThisPlugin, runtime.LabelClusterID: cluster}}}
}

// Only pods of this cluster whose owner, of this machine, is gone are
// reaped.
func TestReapOrphans(t *testing.T) {
	boot := runtime.OwnerBoot()
	if boot == "" {
		t.Skip("the kernel tells no boot ID")
	}
	dead := map[string]string{runtime.LabelOwner: "999999999:1", runtime.LabelOwnerBoot: boot}
	e, client := fakeEngine(t,
		plugPod("orphan", "c1", dead),
		plugPod("live", "c1", map[string]string{runtime.LabelOwner: runtime.Owner(), runtime.LabelOwnerBoot: boot}),
		plugPod("other-cluster", "c2", dead),
		plugPod("other-machine", "c1", map[string]string{runtime.LabelOwner: "999999999:1", runtime.LabelOwnerBoot: "another-boot"}),
		plugPod("no-owner", "c1", nil),
	)
	reaped, err := e.ReapOrphans(context.Background(), "c1")
	if err != nil || !slices.Equal(reaped, []string{"orphan"}) {
		t.Fatalf("reaped %v, %v", reaped, err)
	}
	list, _ := client.CoreV1().Pods("plugins").List(context.Background(), metav1.ListOptions{})
	var left []string
	for _, p := range list.Items {
		left = append(left, p.Name)
	}
	slices.Sort(left)
	if !slices.Equal(left, []string{"live", "no-owner", "other-cluster", "other-machine"}) {
		t.Fatalf("left %v", left)
	}
}

// setStatus plays the kubelet: it sets the status of the one pod there is,
// once it is there.
func setStatus(t *testing.T, client *fake.Clientset, status func(*corev1.Pod)) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		list, err := client.CoreV1().Pods("plugins").List(context.Background(), metav1.ListOptions{})
		if err == nil && len(list.Items) == 1 {
			pod := list.Items[0]
			status(&pod)
			if _, err := client.CoreV1().Pods("plugins").UpdateStatus(context.Background(), &pod, metav1.UpdateOptions{}); err != nil {
				t.Error(err)
			}
			return pod.Name
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Error("no pod was made")
	return ""
}

func running(pod *corev1.Pod) {
	pod.Status.Phase, pod.Status.PodIP = corev1.PodRunning, "10.214.0.7"
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: pluginContainer, ImageID: "sha256:" + strings.Repeat("b", 64),
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
}

func podGone(t *testing.T, client *fake.Clientset, name string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := client.CoreV1().Pods("plugins").Get(context.Background(), name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pod %s is still there: %v", name, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startPod starts a container of testSpec's on the fake cluster, its pod
// set running as the kubelet would; it returns the pod's name.
func startPod(t *testing.T) (runtime.Container, *fake.Clientset, string) {
	t.Helper()
	e, client := fakeEngine(t)
	c, err := e.Container(testSpec())
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() { started <- c.Start(context.Background()) }()
	name := setStatus(t, client, running)
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	return c, client, name
}

// A start waits for the pod to run, maps the plugin's socket to the
// carrier's port, and publishes an OOM kill as one (SIGKILL, 137, though
// gVisor's shim reports 128); the pod is deleted once its plugin ended.
func TestStartRunsAndPublishesTheExit(t *testing.T) {
	c, client, name := startPod(t)
	if c.ID() != name {
		t.Errorf("ID %q, want the pod's name %q", c.ID(), name)
	}
	if _, err := client.NetworkingV1().NetworkPolicies("plugins").Get(context.Background(), name, metav1.GetOptions{}); err != nil {
		t.Errorf("network=false: the NetworkPolicy: %v", err)
	}
	network, addr, err := c.PluginToHost("unix", runtime.PluginSocketDir+"/plugin123")
	if err != nil || network != "tcp" || addr != "10.214.0.7:5599" {
		t.Errorf("PluginToHost: %s %s %v", network, addr, err)
	}
	setStatus(t, client, func(pod *corev1.Pod) {
		pod.Status.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 128, Reason: "OOMKilled"}}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Wait(ctx); !errors.Is(err, runtime.ErrContainerExited) || !strings.Contains(err.Error(), "137") {
		t.Fatalf("Wait: %v", err)
	}
	select {
	case <-c.State().Leaving():
		t.Error("a pod that no one deleted reads as leaving")
	default:
	}
	if kills, watched := c.State().OOMKills(); kills != 1 || !watched {
		t.Errorf("OOM kills %d, watched %v", kills, watched)
	}
	podGone(t, client, name)
	c.AwaitRemoval(5 * time.Second)
}

// A start failure says the cluster's reason, wrapped so errors.Is tells
// it, and leaves no pod.
func TestStartFailures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status func(*corev1.Pod)
		want   error
		says   string
		mount  string
	}{
		{"image missing", func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: pluginContainer, State: corev1.ContainerState{
				Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull", Message: `Container image "registry.example/kv:0.25.0" is not present with pull policy of Never`}}}}
		}, runtime.ErrImageMissing, "is not present with pull policy of Never", ""},
		{"unschedulable", func(p *corev1.Pod) {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable",
				Message: "0/1 nodes are available: 1 Insufficient memory."}}
		}, runtime.ErrStartRefused, "Insufficient memory", ""},
		{"carrier image missing", func(p *corev1.Pod) {
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: carrierInit, State: corev1.ContainerState{
				Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "not found"}}}}
		}, runtime.ErrImageMissing, "the carrier's image localhost/rc-carrier:1", ""},
		{"carrier image missing, as an image volume", func(p *corev1.Pod) {
			// As the test node's kubelet says it: the plugin container's
			// status, naming the volume's image.
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: pluginContainer, State: corev1.ContainerState{
				Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull", Message: `Container image "localhost/rc-carrier:1" is not present with pull policy of Never`}}}}
		}, runtime.ErrImageMissing, "the carrier's image localhost/rc-carrier:1 (mounted as an image volume) is not on the node", MountImageVolume},
		{"a node without image volumes", func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: pluginContainer, State: corev1.ContainerState{
				Waiting: &corev1.ContainerStateWaiting{Reason: "CreateContainerError", Message: `failed to generate container spec: image volumes are not supported`}}}}
		}, runtime.ErrStartRefused, "name carrier_mount=init_container", MountImageVolume},
		{"the carrier cannot run from its image volume", func(p *corev1.Pod) {
			running(p)
			p.Status.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 128, Reason: "StartError",
				Message: `exec: "/.rc-carrier/carrier": permission denied`}}
		}, runtime.ErrStartRefused, "permission denied (the carrier is mounted as an image volume", MountImageVolume},
		{"sha256 mismatch", running, runtime.ErrSHA256Mismatch, "not the registered", ""},
		{"runtime could not start it", func(p *corev1.Pod) {
			running(p)
			p.Status.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 128, Reason: "StartError",
				Message: "failed to create containerd task: failed to start shim"}}
		}, runtime.ErrStartRefused, "StartError: failed to create containerd task", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, client := fakeEngine(t)
			e.carrierMount = tc.mount
			spec := testSpec()
			spec.Plugin.SHA256 = strings.Repeat("c", 64)
			c, err := e.Container(spec)
			if err != nil {
				t.Fatal(err)
			}
			started := make(chan error, 1)
			go func() { started <- c.Start(context.Background()) }()
			name := setStatus(t, client, tc.status)
			err = <-started
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Start: %v, want %v saying %q", err, tc.want, tc.says)
			}
			podGone(t, client, name)
			if _, err := client.NetworkingV1().NetworkPolicies("plugins").Get(context.Background(), name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("the NetworkPolicy is left: %v", err)
			}
			if c.ID() != "" {
				t.Errorf("ID %q after a failed start", c.ID())
			}
		})
	}
}

// A pod whose creation the cluster refuses (a quota) is a refusal in the
// cluster's words.
func TestCreateRefused(t *testing.T) {
	e, client := fakeEngine(t)
	client.PrependReactor("create", "pods", func(action k8stesting.Action) (bool, kruntime.Object, error) {
		return true, nil, apierrors.NewForbidden(corev1.Resource("pods"), "x", errors.New(`exceeded quota: plugins, requested: limits.memory=64Mi, used: limits.memory=1Gi, limited: limits.memory=1Gi`))
	})
	c, _ := e.Container(testSpec())
	err := c.Start(context.Background())
	if !errors.Is(err, runtime.ErrStartRefused) || !strings.Contains(err.Error(), "exceeded quota") {
		t.Fatalf("Start: %v", err)
	}
	list, _ := client.NetworkingV1().NetworkPolicies("plugins").List(context.Background(), metav1.ListOptions{})
	if len(list.Items) != 0 {
		t.Errorf("the NetworkPolicy is left: %v", list.Items)
	}
}

// The pod's log is split: the handshake line to go-plugin's stdout, the
// rest to its stderr, all to the output, without the kubelet's timestamps;
// a line stamped before the one it follows (the other stream's) is kept; a
// stream opened again skips the lines read; a line with no timestamp is the
// kubelet's, not the plugin's.
func TestSplit(t *testing.T) {
	var out, errs, all strings.Builder
	s := &splitter{stdout: &out, stderr: &errs, output: &all, stamped: true}
	first := "2026-12-06T10:00:00.2Z starting\n2026-12-06T10:00:00.1Z 1|5|unix|/tmp/go-plugin-container/p|grpc|CERT\n"
	s.read(strings.NewReader(first))
	if want := time.Date(2026, 12, 6, 9, 59, 59, 0, time.UTC); !s.since().Equal(want) {
		t.Errorf("since %v, want %v", s.since(), want)
	}
	s.read(strings.NewReader(first + "2026-12-06T10:00:01.5Z later\n2026-12-06T10:00:02Z 1|5|unix|again|grpc|\nno stamp"))
	if out.String() != "1|5|unix|/tmp/go-plugin-container/p|grpc|CERT\n" || errs.String() != "starting\nlater\n1|5|unix|again|grpc|\n" ||
		s.unstamped != "no stamp" || !strings.HasPrefix(all.String(), "starting\n1|5|") {
		t.Fatalf("stdout %q, stderr %q, all %q, unstamped %q", out.String(), errs.String(), all.String(), s.unstamped)
	}
	if _, ok := s.seen["2026-12-06T10:00:00.2Z starting\n"]; ok {
		t.Errorf("a line from before since() is still kept: %v", s.seen)
	}
}

// A start given up while the pod is not running yet deletes it.
func TestAbandonedStart(t *testing.T) {
	e, client := fakeEngine(t)
	c, _ := e.Container(testSpec())
	started := make(chan error, 1)
	go func() { started <- c.Start(context.Background()) }()
	name := setStatus(t, client, func(*corev1.Pod) {})
	c.State().Abandon()
	if err := <-started; !errors.Is(err, runtime.ErrStartAbandoned) {
		t.Fatalf("Start: %v", err)
	}
	podGone(t, client, name)
}

// A sandbox the node cannot make is told only by an event: the start
// says it.
func TestSandboxFailure(t *testing.T) {
	e, client := fakeEngine(t)
	c, _ := e.Container(testSpec())
	started := make(chan error, 1)
	go func() { started <- c.Start(context.Background()) }()
	name := setStatus(t, client, func(*corev1.Pod) {})
	client.CoreV1().Events("plugins").Create(context.Background(), &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: name + ".1", Namespace: "plugins"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: name, Namespace: "plugins"},
		Reason:         "FailedCreatePodSandBox",
		Message:        `Failed to create pod sandbox: no runtime for "runsc" is configured`,
	}, metav1.CreateOptions{})
	err := <-started
	if !errors.Is(err, runtime.ErrStartRefused) || !strings.Contains(err.Error(), `no runtime for "runsc" is configured`) {
		t.Fatalf("Start: %v", err)
	}
	podGone(t, client, name)
}

// A pod whose image volume the kubelet cannot mount waits (the kubelet
// retries): a start that runs out of time says the kubelet's words and
// what to name instead.
func TestImageVolumeNotMounted(t *testing.T) {
	e, client := fakeEngine(t)
	WithCarrierMount(MountImageVolume)(e)
	c, _ := e.Container(testSpec())
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	started := make(chan error, 1)
	go func() { started <- c.Start(ctx) }()
	name := setStatus(t, client, func(*corev1.Pod) {})
	client.CoreV1().Events("plugins").Create(context.Background(), &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: name + ".mount", Namespace: "plugins"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: name, Namespace: "plugins"},
		Reason:         "FailedMount", Message: `MountVolume.SetUp failed for volume "carrier": unsupported volume type`,
	}, metav1.CreateOptions{})
	err := <-started
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "FailedMount: MountVolume.SetUp failed") ||
		!strings.Contains(err.Error(), "name carrier_mount=init_container") {
		t.Fatalf("Start: %v", err)
	}
	podGone(t, client, name)
}

// An API server that does not answer is told from one that refuses.
func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	config := &rest.Config{Host: "https://" + addr, Timeout: 5 * time.Second}
	client, err := k8s.NewForConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	e := NewWithClient("kubernetes://plugins/x", "plugins", client)
	err = e.Ping(context.Background())
	if err == nil || !e.Unreachable(err) {
		t.Fatalf("Ping of nothing: %v, unreachable %v", err, e.Unreachable(err))
	}
	if e.Unreachable(apierrors.NewForbidden(corev1.Resource("pods"), "x", errors.New("no"))) {
		t.Fatal("a refusal read as unreachable")
	}
}

// A pull is bounded by the pull's limit, not the start's: a start whose
// limit passes during a pull goes on until the pod runs, or until the
// pull's limit.
func TestPullHasItsOwnLimit(t *testing.T) {
	for _, runs := range []bool{true, false} {
		e, client := fakeEngine(t)
		spec := testSpec()
		spec.PullTimeout = 1500 * time.Millisecond
		c, _ := e.Container(spec)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		started := make(chan error, 1)
		go func() { started <- c.Start(ctx) }()
		name := setStatus(t, client, func(*corev1.Pod) {})
		client.CoreV1().Events("plugins").Create(context.Background(), &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Name: name + ".pulling", Namespace: "plugins"},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: name, Namespace: "plugins", FieldPath: "spec.containers{plugin}"},
			Reason:         "Pulling", Message: `Pulling image "registry.example/kv:0.25.0"`,
		}, metav1.CreateOptions{})
		if runs {
			time.Sleep(time.Second) // past the start's limit
			setStatus(t, client, running)
			if err := <-started; err != nil {
				t.Fatalf("a pull past the start's limit: %v", err)
			}
			if c.State().Pulled <= 0 {
				t.Errorf("Pulled %v", c.State().Pulled)
			}
			c.Kill(context.Background())
			continue
		}
		if err := <-started; !errors.Is(err, runtime.ErrPullTimeout) {
			t.Fatalf("a pull past its limit: %v", err)
		}
		podGone(t, client, name)
	}
}

// A pod deleted from outside (its deletion timestamp set, its grace period
// running) reads as leaving while its plugin still runs: the host sends
// its next requests to a new pod.
func TestDeletedPodIsLeaving(t *testing.T) {
	c, client, _ := startPod(t)
	setStatus(t, client, func(pod *corev1.Pod) {
		now := metav1.Now()
		pod.DeletionTimestamp, pod.DeletionGracePeriodSeconds = &now, ptr(int64(deleteGrace))
	})
	select {
	case <-c.State().Leaving():
	case <-time.After(5 * time.Second):
		t.Fatal("a pod being deleted does not read as leaving")
	}
	if done, _ := c.State().Exited(); done {
		t.Fatal("leaving read as an exit")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c.Kill(ctx)
}

// A pod deleted after its plugin ended (the engine deletes it then) is not
// leaving: its end is the plugin's own exit, which the crash-loop rule
// counts.
func TestEndedPodDeletedIsNotLeaving(t *testing.T) {
	c, client, _ := startPod(t)
	setStatus(t, client, func(pod *corev1.Pod) {
		now := metav1.Now()
		pod.DeletionTimestamp = &now
		pod.Status.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Wait(ctx); !errors.Is(err, runtime.ErrContainerExited) {
		t.Fatalf("Wait: %v", err)
	}
	select {
	case <-c.State().Leaving():
		t.Fatal("a pod deleted after its plugin ended reads as leaving")
	default:
	}
	c.AwaitRemoval(5 * time.Second)
}
