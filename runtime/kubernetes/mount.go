package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	"k8s.io/apimachinery/pkg/version"
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
	discovery := e.client.Discovery()
	rc := discovery.RESTClient()
	if rc == nil {
		return discovery.ServerVersion() // client-go's fake: no REST client
	}
	body, err := rc.Get().AbsPath("/version").Do(ctx).Raw()
	if err != nil {
		return nil, err
	}
	var info version.Info
	if err := json.Unmarshal(body, &info); err != nil {
		return nil, fmt.Errorf("the API server's /version: %w", err)
	}
	return &info, nil
}

// carrierMountFor is how a pod made now gets its carrier: the address's
// carrier_mount, else an image volume where the API server is 1.35 or
// later, else an init container. The version is asked once per engine; a
// cluster that does not answer gets an init container, which any cluster
// runs (err says why, for a preview).
func (e *Engine) carrierMountFor(ctx context.Context) (string, error) {
	if e.carrierMount != "" {
		return e.carrierMount, nil
	}
	e.mu.Lock()
	learned := e.learnedMount
	e.mu.Unlock()
	if learned != "" {
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
	e.learnedMount = mount
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

// mountHint is what to add to a refusal that may be the nodes' or the API
// server's lack of image volumes, else "".
func mountHint(mount, refusal string) string {
	if mount != MountImageVolume || !strings.Contains(strings.ToLower(refusal), "volume") {
		return ""
	}
	return fmt.Sprintf(" (the carrier is mounted as an image volume, carrier_mount=%s: a cluster whose API server, kubelets or "+
		"container runtime do not support image volumes refuses it; name carrier_mount=%s in the engine's address)",
		MountImageVolume, MountInitContainer)
}
