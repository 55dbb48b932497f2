package kubernetes

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/version"
	fakediscovery "k8s.io/client-go/discovery/fake"
	clienttesting "k8s.io/client-go/testing"
)

// The carrier's mount: an image volume from Kubernetes 1.35 (image volumes
// on by default), an init container before it or when the version cannot
// be read; carrier_mount overrides both ways. Either way the plugin's
// container runs the carrier from the same path.
func TestCarrierMount(t *testing.T) {
	for _, tc := range []struct {
		server, setting, want string
	}{
		{"v1.35.4", "", MountImageVolume},
		{"v1.36.0-gke.1200", "", MountImageVolume},
		{"v1.34.2", "", MountInitContainer},
		{"", "", MountInitContainer}, // no version said
		{"v1.35.4", MountInitContainer, MountInitContainer},
		{"v1.33.0", MountImageVolume, MountImageVolume},
	} {
		e, client := fakeEngine(t)
		client.Discovery().(*fakediscovery.FakeDiscovery).FakedServerVersion = &version.Info{GitVersion: tc.server}
		if tc.setting != "" {
			WithCarrierMount(tc.setting)(e)
		}
		got, err := e.carrierMountFor(context.Background())
		if got != tc.want || err != nil {
			t.Errorf("server %q, carrier_mount %q: %s, %v; want %s", tc.server, tc.setting, got, err, tc.want)
		}
		ps := preview(t, e, testSpec()).Pod.Spec
		c := ps.Containers[0]
		if c.Command[0] != carrierBinary || !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
			return m.Name == carrierVolumeName && m.MountPath == carrierDir && m.ReadOnly
		}) {
			t.Errorf("%s: the plugin container runs %q with mounts %+v", tc.want, c.Command, c.VolumeMounts)
		}
		v := ps.Volumes[slices.IndexFunc(ps.Volumes, func(v corev1.Volume) bool { return v.Name == carrierVolumeName })]
		switch tc.want {
		case MountImageVolume:
			if len(ps.InitContainers) != 0 || v.Image == nil || v.Image.Reference != "localhost/rc-carrier:1" || v.Image.PullPolicy != "IfNotPresent" {
				t.Errorf("image volume: init containers %d, volume %+v", len(ps.InitContainers), v.VolumeSource)
			}
		default:
			if len(ps.InitContainers) != 1 || v.EmptyDir == nil || ps.InitContainers[0].Image != "localhost/rc-carrier:1" ||
				!slices.Equal(ps.InitContainers[0].Command, []string{"/carrier", "install", carrierBinary}) {
				t.Errorf("init container: %+v, volume %+v", ps.InitContainers, v.VolumeSource)
			}
		}
	}
	// A cluster that does not say its version gets an init container, and
	// is asked again next time; a version said holds for learnedFor.
	e, client := fakeEngine(t)
	refuse := true
	client.PrependReactor("get", "version", func(clienttesting.Action) (bool, k8sruntime.Object, error) {
		if refuse {
			return true, nil, errors.New("the API server is restarting")
		}
		return false, nil, nil
	})
	if got, err := e.carrierMountFor(context.Background()); got != MountInitContainer || err == nil {
		t.Errorf("no version: %s, %v", got, err)
	}
	if p, err := e.Preview(testSpec()); err != nil || !slices.ContainsFunc(p.SetAtStart, func(s string) bool { return strings.Contains(s, "the API server is restarting") }) {
		t.Errorf("a preview without the version: %+v, %v", p.SetAtStart, err)
	}
	refuse = false
	client.Discovery().(*fakediscovery.FakeDiscovery).FakedServerVersion = &version.Info{GitVersion: "v1.35.0"}
	if got, err := e.carrierMountFor(context.Background()); got != MountImageVolume || err != nil {
		t.Errorf("asked again: %s, %v", got, err)
	}
	client.Discovery().(*fakediscovery.FakeDiscovery).FakedServerVersion = &version.Info{GitVersion: "v1.34.0"}
	if got, _ := e.carrierMountFor(context.Background()); got != MountImageVolume {
		t.Errorf("within learnedFor: %s", got)
	}
	e.learnedAt = time.Now().Add(-learnedFor)
	if got, _ := e.carrierMountFor(context.Background()); got != MountInitContainer {
		t.Errorf("after learnedFor: %s", got)
	}
}

func TestMountHint(t *testing.T) {
	if h := mountHint(MountImageVolume, `Pod "x" is invalid: spec.volumes[0]: Required value: must specify a volume type`); !strings.Contains(h, "carrier_mount=init_container") {
		t.Errorf("hint %q", h)
	}
	for _, tc := range [][2]string{{MountInitContainer, "volume"}, {MountImageVolume, "exceeded quota: compute"}} {
		if h := mountHint(tc[0], tc[1]); h != "" {
			t.Errorf("%s, %q: hint %q", tc[0], tc[1], h)
		}
	}
}
