package kubernetes

import (
	"context"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/version"
	fakediscovery "k8s.io/client-go/discovery/fake"
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
		{"", "", MountInitContainer}, // the version cannot be read
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
	// The version is asked once per engine.
	e, client := fakeEngine(t)
	client.Discovery().(*fakediscovery.FakeDiscovery).FakedServerVersion = &version.Info{GitVersion: "v1.35.0"}
	e.carrierMountFor(context.Background())
	client.Discovery().(*fakediscovery.FakeDiscovery).FakedServerVersion = &version.Info{GitVersion: "v1.30.0"}
	if got, _ := e.carrierMountFor(context.Background()); got != MountImageVolume {
		t.Errorf("asked again: %s", got)
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
