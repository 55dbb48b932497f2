package kubernetes

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// Why a pod does not run, in the cluster's own words, wrapped in the
// runtime's errors so that callers tell them apart (errors.Is).

// createRefused is the cluster's refusal of a create: over quota, forbidden
// or invalid are the runtime's or registration's fault, in its own words.
func createRefused(kind, namespace, name string, err error) error {
	if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) || apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("%w: the cluster refused the %s %s/%s: %w", runtime.ErrStartRefused, kind, namespace, name, err)
	}
	return fmt.Errorf("creating the %s %s/%s: %w", kind, namespace, name, err)
}

// pullFailures are the kubelet's waiting reasons for an image it cannot
// get; refusals those for a container it cannot make or start.
var (
	pullFailures = []string{"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName", "ImageInspectError"}
	refusals     = []string{"CreateContainerConfigError", "CreateContainerError", "RunContainerError", "PreCreateHookError", "PreStartHookError"}
)

// startFailure is the cluster's reason a pod will not run, in its own
// words, or nil while it may still; mount is how the pod gets its carrier.
func startFailure(pod *corev1.Pod, carrierImage, mount string) error {
	for _, cond := range pod.Status.Conditions {
		if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse && cond.Reason == corev1.PodReasonUnschedulable {
			return fmt.Errorf("%w: the pod %s cannot be scheduled: %s", runtime.ErrStartRefused, pod.Name, cond.Message)
		}
	}
	if pod.Status.Phase == corev1.PodFailed && containerStatus(pod.Status.ContainerStatuses, pluginContainer) == nil {
		return fmt.Errorf("%w: the pod %s failed before its plugin ran: %s %s", runtime.ErrStartRefused, pod.Name, pod.Status.Reason, pod.Status.Message)
	}
	for _, st := range pod.Status.InitContainerStatuses {
		if t := st.State.Terminated; t != nil && t.ExitCode != 0 {
			return fmt.Errorf("%w: the pod %s's carrier (image %s) could not be installed: exit code %d, %s %s",
				runtime.ErrStartRefused, pod.Name, carrierImage, t.ExitCode, t.Reason, strings.TrimSpace(t.Message))
		}
		if err := waitingFailure(pod.Name, "the carrier's image "+carrierImage, mount, st.State.Waiting); err != nil {
			return err
		}
	}
	for _, st := range pod.Status.ContainerStatuses {
		image := "the plugin's image " + pod.Spec.Containers[0].Image
		if w := st.State.Waiting; w != nil {
			// An image volume's image the kubelet cannot get is told as
			// the plugin container's, naming the volume's image.
			image = imageNamed(w.Message, pod.Spec.Containers[0].Image, carrierImage)
		}
		if err := waitingFailure(pod.Name, image, mount, st.State.Waiting); err != nil {
			return err
		}
		// The runtime could not start the container at all: no exit of the
		// plugin's (the code is the runtime's), its reason is the kubelet's.
		if t := st.State.Terminated; t != nil && contains(startErrors, t.Reason) {
			return fmt.Errorf("%w: the container runtime could not start the pod %s's plugin container: %s: %s%s",
				runtime.ErrStartRefused, pod.Name, t.Reason, strings.TrimSpace(t.Message), mountHint(mount, t.Message))
		}
	}
	return nil
}

// startErrors are the reasons of a container that ended because the
// container runtime could not start it.
var startErrors = []string{"StartError", "ContainerCannotRun"}

func waitingFailure(pod, image, mount string, w *corev1.ContainerStateWaiting) error {
	switch {
	case w == nil:
		return nil
	case contains(refusals, w.Reason):
		return fmt.Errorf("%w: the kubelet could not start the pod %s: %s: %s%s", runtime.ErrStartRefused, pod, w.Reason, w.Message, mountHint(mount, w.Message))
	}
	return failureOf(w.Reason, w.Message, image)
}

// failureOf reads a kubelet's reason about an image: not on the node under
// pull policy never is a missing image; a pull that failed is that too, and
// the registry's refusal.
func failureOf(reason, message, image string) error {
	switch {
	case reason == "ErrImageNeverPull":
		return fmt.Errorf("%w: %s is not on the node, and its pull policy is never: the kubelet says %s: %s", runtime.ErrImageMissing, image, reason, message)
	case contains(pullFailures, reason), reason == "Failed" && strings.Contains(message, "pull"):
		return fmt.Errorf("%w: %w: %s is not on the node and could not be pulled: the kubelet says %s: %s",
			runtime.ErrImageMissing, runtime.ErrPullFailed, image, reason, message)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// eventFailure is the kubelet's reason a pod will not run where only an
// event says it at first: a sandbox it cannot make (a RuntimeClass whose
// handler the node lacks) leaves the pod Pending, and an image it cannot get
// is an event seconds before the container's status says so. pulling
// reports an image being pulled (a Pulling event with no Pulled after it).
func (c *container) eventFailure() (pulling bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list, err := c.e.client.CoreV1().Events(c.e.namespace).List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.kind=Pod,involvedObject.name=" + c.name,
	})
	if err != nil {
		return false, nil // events are a courtesy (a Role may not grant them): the start limit still holds
	}
	pulls := map[string]int{} // by container: Pulling +1, Pulled -1
	for _, ev := range list.Items {
		if ev.InvolvedObject.Name != c.name {
			continue
		}
		switch ev.Reason {
		case "Pulling":
			pulls[ev.InvolvedObject.FieldPath]++
		case "Pulled":
			pulls[ev.InvolvedObject.FieldPath]--
		}
		if err := failureOf(ev.Reason, ev.Message, c.imageOf(ev.InvolvedObject.FieldPath, ev.Message)); err != nil {
			return false, err
		}
		if ev.Reason == "FailedMount" {
			// Retried by the kubelet, so no failure yet; said if the start
			// runs out of time.
			c.mu.Lock()
			c.mountTrouble = ev.Message
			c.mu.Unlock()
		}
		if ev.Reason == "FailedCreatePodSandBox" {
			return false, fmt.Errorf("%w: the node could not make the pod's sandbox (%s): %s", runtime.ErrStartRefused, c.spec.What(), ev.Message)
		}
	}
	for _, n := range pulls {
		if n > 0 {
			return true, nil
		}
	}
	return false, nil
}

// imageOf names the image an event is about: the init container's is the
// carrier's; an image volume's event names no container, only its image.
func (c *container) imageOf(fieldPath, message string) string {
	if fieldPath == "spec.initContainers{"+carrierInit+"}" {
		return "the carrier's image " + c.e.carrierImage
	}
	return imageNamed(message, c.spec.Plugin.PullRef(), c.e.carrierImage)
}

// imageNamed says which image a kubelet's message about the plugin's
// container is about: the carrier's when it names that one and not the
// plugin's.
func imageNamed(message, pluginImage, carrierImage string) string {
	if strings.Contains(message, carrierImage) && !strings.Contains(message, `"`+pluginImage+`"`) {
		return "the carrier's image " + carrierImage + " (mounted as an image volume)"
	}
	return "the plugin's image " + pluginImage
}

// describe says where a pod stands, for a start that timed out.
func describe(pod *corev1.Pod) string {
	if pod == nil {
		return "the cluster said nothing of it"
	}
	parts := []string{"phase " + string(pod.Status.Phase)}
	for _, cond := range pod.Status.Conditions {
		if cond.Status != corev1.ConditionTrue && cond.Message != "" {
			parts = append(parts, fmt.Sprintf("%s: %s", cond.Type, cond.Message))
		}
	}
	for _, st := range append(slices.Clone(pod.Status.InitContainerStatuses), pod.Status.ContainerStatuses...) {
		if w := st.State.Waiting; w != nil {
			parts = append(parts, fmt.Sprintf("container %s waiting: %s %s", st.Name, w.Reason, w.Message))
		}
	}
	return strings.Join(parts, "; ")
}

// imageDigest is the digest a container status's imageID ends with.
var imageDigest = regexp.MustCompile(`sha256:([0-9a-f]{64})$`)

// checkImage holds what ran to what was registered. Kubernetes pins images
// by manifest digest only (image_digest, in the pod's image reference);
// Vault's sha256 is the image ID (the config's digest), which a pod cannot
// name. The kubelet reports what ran as imageID: a bare image ID where the
// runtime knows no repository digest (an imported image), else
// repository@manifest-digest. A registered sha256 must equal the one or,
// where only a manifest digest is told, the registered image_digest must.
func (c *container) checkImage() error {
	want := strings.TrimPrefix(c.spec.Plugin.SHA256, "sha256:")
	if want == "" {
		return nil
	}
	c.mu.Lock()
	pod := c.pod
	c.mu.Unlock()
	st := containerStatus(pod.Status.ContainerStatuses, pluginContainer)
	if st == nil {
		return nil
	}
	m := imageDigest.FindStringSubmatch(st.ImageID)
	switch {
	case m == nil:
		return fmt.Errorf("%w: the kubelet reports the plugin's image as %q, with no digest to hold to the registered sha256 %s",
			runtime.ErrSHA256Mismatch, st.ImageID, want)
	case m[1] == want:
		return nil
	case strings.Contains(st.ImageID, "@") && strings.TrimPrefix(c.spec.Plugin.ImageDigest, "sha256:") == m[1]:
		return nil // the manifest the registration pins ran; its image ID is not told
	case strings.Contains(st.ImageID, "@"):
		return fmt.Errorf("%w: the pod ran %s, whose manifest digest is all Kubernetes tells, and the registration's sha256 %s is an image ID: "+
			"register the manifest digest sha256:%s as image_digest to pin it", runtime.ErrSHA256Mismatch, st.ImageID, want, m[1])
	}
	return fmt.Errorf("%w: the pod ran the image sha256:%s, not the registered %s", runtime.ErrSHA256Mismatch, m[1], want)
}
