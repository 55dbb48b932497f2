package docker

import (
	"reflect"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

func testPlugin() runtime.Plugin {
	return runtime.Plugin{
		Name: "kv", Type: "secret", Version: "v1.2.3", Image: "example/kv",
		Command: "/bin/kv", Args: []string{"-debug", "x y"}, Env: []string{"A=1", "B=2", "A=3"},
	}
}

func testHost() runtime.Host {
	return runtime.Host{
		PID: 4242, ClusterID: "cluster-1", GroupID: 1000, SocketDir: "/tmp/plugin-dir123",
		BaseEnv: []string{"VAULT_BACKEND_PLUGIN=cookie", "PLUGIN_PROTOCOL_VERSIONS=4,5", "PLUGIN_UNIX_SOCKET_DIR=/tmp/plugin-dir123"},
		SDKEnv:  []string{"VAULT_VERSION=1.21.0", "VAULT_PLUGIN_AUTOMTLS_ENABLED=true"},
	}
}

func TestBuildRunConfigFieldByField(t *testing.T) {
	rt := runtime.Runtime{Name: "limited", OCIRuntime: "runc", CgroupParent: "/vault/", NanoCPUs: 500_000_000, MemoryBytes: 64 << 20}
	rc, err := BuildRunConfig(testPlugin(), rt, testHost(), runtime.DefaultHardening())
	if err != nil {
		t.Fatal(err)
	}
	c, h := rc.Config, rc.HostConfig

	check := func(field string, got, want interface{}) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", field, got, want)
		}
	}
	check("Image", c.Image, "example/kv:1.2.3")
	check("Entrypoint", []string(c.Entrypoint), []string{"/bin/kv"})
	check("Cmd", []string(c.Cmd), []string{"-debug", "x y"})
	check("ArgsEscaped", c.ArgsEscaped, true)
	check("Env", c.Env, []string{
		"B=2", "A=3", // the plugin's, the duplicate A removed (last wins)
		"VAULT_VERSION=1.21.0", "VAULT_PLUGIN_AUTOMTLS_ENABLED=true",
		"VAULT_BACKEND_PLUGIN=cookie", "PLUGIN_PROTOCOL_VERSIONS=4,5",
		"PLUGIN_UNIX_SOCKET_DIR=/tmp/go-plugin-container", // the container's view wins over the host's
	})
	check("Labels", c.Labels, map[string]string{
		runtime.LabelVaultPID: "4242", runtime.LabelClusterID: "cluster-1", runtime.LabelPluginName: "kv", runtime.LabelPluginType: "secret",
		runtime.LabelPluginVersion: "v1.2.3", runtime.LabelManagedBy: "vault-plugin-runtime-catalog", runtime.LabelPluginRuntime: "limited",
	})
	check("User", c.User, "")
	check("NetworkDisabled", c.NetworkDisabled, true)

	check("Runtime", h.Runtime, "runc")
	check("AutoRemove", h.AutoRemove, true)
	check("RestartPolicy", h.RestartPolicy, container.RestartPolicy{})
	check("NanoCPUs", h.NanoCPUs, int64(500_000_000))
	check("Memory", h.Memory, int64(64<<20))
	check("CgroupParent", h.CgroupParent, "/vault/")
	check("CapDrop", []string(h.CapDrop), []string{"ALL"})
	check("CapAdd", []string(h.CapAdd), []string(nil))
	check("GroupAdd", h.GroupAdd, []string{"1000"})
	check("Mounts", h.Mounts, []mount.Mount{{
		Type: mount.TypeBind, Source: "/tmp/plugin-dir123", Target: "/tmp/go-plugin-container",
		BindOptions: &mount.BindOptions{Propagation: mount.PropagationPrivate, NonRecursive: true},
		Consistency: mount.ConsistencyDefault,
	}})
	check("SecurityOpt", h.SecurityOpt, []string{"no-new-privileges"})
	check("ReadonlyRootfs", h.ReadonlyRootfs, true)
	check("PidsLimit", *h.PidsLimit, int64(runtime.DefaultPidsLimit))
	check("NetworkMode", h.NetworkMode, container.NetworkMode("none"))
	check("EndpointsConfig", len(rc.NetworkingConfig.EndpointsConfig), 0)
}

func TestBuildRunConfigDefaultsAndOptions(t *testing.T) {
	p := testPlugin()
	p.Command, p.Args, p.SHA256 = "", nil, "sha256:"+strings.Repeat("ab", 32)
	h := testHost()
	h.GroupID, h.MLock = 0, true
	rc, err := BuildRunConfig(p, runtime.Runtime{Rootless: true, Network: true}, h, runtime.Hardening{})
	if err != nil {
		t.Fatal(err)
	}
	c, hc := rc.Config, rc.HostConfig
	if c.Image != "sha256:"+strings.Repeat("ab", 32) {
		t.Errorf("Image = %s, want the image ID", c.Image)
	}
	if c.Entrypoint != nil || c.Cmd != nil || c.ArgsEscaped {
		t.Errorf("no command or args must keep the image's: %v %v %v", c.Entrypoint, c.Cmd, c.ArgsEscaped)
	}
	if hc.Runtime != "runsc" {
		t.Errorf("Runtime = %q, want the default runsc", hc.Runtime)
	}
	if !reflect.DeepEqual([]string(hc.CapAdd), []string{"IPC_LOCK", "DAC_OVERRIDE"}) {
		t.Errorf("CapAdd = %v", hc.CapAdd)
	}
	if hc.GroupAdd != nil {
		t.Errorf("GroupAdd = %v: gid 0 must never be added", hc.GroupAdd)
	}
	if hc.SecurityOpt != nil || hc.ReadonlyRootfs || hc.PidsLimit != nil {
		t.Errorf("hardening off: %v %v %v", hc.SecurityOpt, hc.ReadonlyRootfs, hc.PidsLimit)
	}
	if c.NetworkDisabled || hc.NetworkMode != "" {
		t.Errorf("a runtime with network: NetworkDisabled %v, NetworkMode %q", c.NetworkDisabled, hc.NetworkMode)
	}
	if _, ok := c.Labels[runtime.LabelPluginRuntime]; ok {
		t.Error("no runtime, yet a runtime label")
	}
}

func TestBuildRunConfigErrors(t *testing.T) {
	p := testPlugin()
	p.Image = "example/kv:1"
	if _, err := BuildRunConfig(p, runtime.Runtime{}, testHost(), runtime.DefaultHardening()); err == nil || err.Error() != `image "example/kv:1" carries a tag: give the image without it, the tag comes from version` {
		t.Errorf("tagged image: %v", err)
	}
	for _, ok := range []string{"127.0.0.1:5000/kv-plugin", "registry.example.com/team/kv", "kv"} {
		p.Image = ok
		if _, err := BuildRunConfig(p, runtime.Runtime{}, testHost(), runtime.DefaultHardening()); err != nil {
			t.Errorf("image %s: %v", ok, err)
		}
	}
	p.Image = "127.0.0.1:5000/kv@sha256:" + strings.Repeat("ab", 32)
	if _, err := BuildRunConfig(p, runtime.Runtime{}, testHost(), runtime.DefaultHardening()); err == nil || !strings.Contains(err.Error(), "carries a digest: give the image without it, and the manifest digest as image_digest") {
		t.Errorf("image with a digest: %v", err)
	}
	p.Image = ""
	if _, err := BuildRunConfig(p, runtime.Runtime{}, testHost(), runtime.DefaultHardening()); err == nil || err.Error() != "plugin has no image" {
		t.Errorf("no image: %v", err)
	}
}
