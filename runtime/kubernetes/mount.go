package kubernetes

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/discovery"
)

// How the carrier reaches a plugin pod (the address's carrier_mount).
const (
	// MountImageVolume mounts the carrier's image as a read-only volume
	// (the ImageVolume feature: beta, and on by default, from Kubernetes
	// 1.35; containerd 2.1 or CRI-O 1.31 on the nodes). The plugin's
	// container is the pod's only one.
	MountImageVolume = "image_volume"
	// MountInitContainer copies the carrier into an emptyDir with an init
	// container: any cluster, and one container start more, which the
	// kubelet sees end only at its next relist (Generic PLEG, each second).
	MountInitContainer = "init_container"
)

// imageVolumesSince is the first Kubernetes release whose API servers and
// kubelets have image volumes on by default.
var imageVolumesSince = utilversion.MustParseGeneric("1.35.0")

// serverVersion is what the API server says of itself (/version, which
// every client may read).
func (e *Engine) serverVersion(ctx context.Context) (*version.Info, error) {
	return discovery.ToServerVersionInterfaceWithContext(e.client.Discovery()).ServerVersionWithContext(ctx)
}

// learnedFor is how long a mount chosen by the API server's version holds:
// a control plane upgraded under a running Vault is asked again.
const learnedFor = 10 * time.Minute

// carrierMountFor is how a pod made now gets its carrier: the address's
// carrier_mount, else an image volume where the API server is 1.35 or
// later, else an init container. The version is asked again after
// learnedFor; a cluster that does not answer gets an init container, which
// any cluster runs (err says why, for a preview). Nodes may lag the API
// server (kubelets up to three releases), and a node's container runtime
// may lack image volumes: such a pod's failure says to name
// carrier_mount=init_container (mountHint).
func (e *Engine) carrierMountFor(ctx context.Context) (string, error) {
	if e.carrierMount != "" {
		return e.carrierMount, nil
	}
	e.mu.Lock()
	learned, at := e.learnedMount, e.learnedAt
	e.mu.Unlock()
	if learned != "" && time.Since(at) < learnedFor {
		return learned, nil
	}
	info, err := e.serverVersion(ctx)
	if err != nil {
		return MountInitContainer, err
	}
	mount := MountInitContainer
	if v, err := utilversion.ParseGeneric(info.GitVersion); err == nil && v.AtLeast(imageVolumesSince) {
		mount = MountImageVolume
	}
	e.mu.Lock()
	e.learnedMount, e.learnedAt = mount, time.Now()
	e.mu.Unlock()
	return mount, nil
}

// carrierVolume is the pod's carrier volume under mount, and the init
// container that fills it, if any: either way the plugin's container finds
// the carrier at carrierBinary.
func (e *Engine) carrierVolume(mount string, init corev1.Container) (corev1.Volume, []corev1.Container) {
	if mount == MountImageVolume {
		// The image holds /carrier, so the volume's root holds carrier.
		return corev1.Volume{Name: carrierVolumeName, VolumeSource: corev1.VolumeSource{
			Image: &corev1.ImageVolumeSource{Reference: e.carrierImage, PullPolicy: corev1.PullIfNotPresent}}}, nil
	}
	init.Name, init.Image, init.ImagePullPolicy = carrierInit, e.carrierImage, corev1.PullIfNotPresent
	init.Command = []string{"/carrier", "install", carrierBinary}
	init.VolumeMounts = []corev1.VolumeMount{{Name: carrierVolumeName, MountPath: carrierDir}}
	return corev1.Volume{Name: carrierVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		[]corev1.Container{init}
}

// mountHint is mountAdvice for a refusal that may be the nodes' or the API
// server's lack of image volumes (it speaks of a volume, a mount, or the
// carrier it could not run), else "".
func mountHint(mount, refusal string) string {
	lower := strings.ToLower(refusal)
	if !strings.Contains(lower, "volume") && !strings.Contains(lower, "mount") && !strings.Contains(lower, carrierBinary) {
		return ""
	}
	return mountAdvice(mount)
}

// mountAdvice is what to add to a failure that may come of the carrier's
// image volume: "" for an init container.
func mountAdvice(mount string) string {
	if mount != MountImageVolume {
		return ""
	}
	return fmt.Sprintf(" (the carrier is mounted as an image volume, carrier_mount=%s: a cluster whose API server, kubelets or "+
		"container runtime do not support image volumes refuses it; name carrier_mount=%s in the engine's address)",
		MountImageVolume, MountInitContainer)
}
