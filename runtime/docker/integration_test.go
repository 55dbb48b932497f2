package docker_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/testimage"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
	dockerengine "github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime/docker"
)

func checkOptions() runtime.Options {
	return runtime.Options{ClusterID: "test-cluster", VaultVersion: "1.21.0"}
}

func TestCheckHandshakeUnderEachRuntime(t *testing.T) {
	docker := testimage.Docker(t)
	id := testimage.Build(t, docker)
	for _, e := range testimage.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			e.Load(t, docker, id)
			res, err := runtime.Check(context.Background(), e.Engine(), testimage.Plugin(id), e.Runtime(), checkOptions())
			if err != nil {
				t.Fatal(err)
			}
			if res.PluginVersion != testimage.Version {
				t.Fatalf("plugin version = %q, want %q", res.PluginVersion, testimage.Version)
			}
			t.Logf("%s: create %v, start %v, handshake %v, total %v", e.Name, res.Created, res.Started, res.Handshake, res.Total)
			testimage.AssertNoContainers(t, e.Client)
		})
	}
}

// A Podman service runs every container under its default OCI runtime: a
// runtime that asks for another is refused there, never run under the
// wrong one.
func TestPodmanServiceRefusesAnotherOCIRuntime(t *testing.T) {
	docker := testimage.Docker(t)
	id := testimage.Build(t, docker)
	for _, e := range testimage.Engines(t) {
		if !e.Podman || e.OCIRuntime != "runc" {
			continue
		}
		e.Load(t, docker, id)
		rt := e.Runtime()
		rt.OCIRuntime = "runsc"
		_, err := runtime.Check(context.Background(), e.Engine(), testimage.Plugin(id), rt, checkOptions())
		want := "unknown OCI runtime: the Podman service at " + e.Address + " runs every container under its default OCI runtime runc, " +
			"whatever a container asks for, and this runtime asks for runsc"
		if !errors.Is(err, runtime.ErrUnknownOCIRuntime) || !strings.Contains(err.Error(), want) {
			t.Fatalf("runsc on a runc service: %v", err)
		}
		testimage.AssertNoContainers(t, e.Client)
		return
	}
	t.Skip("no Podman service for runc")
}

// The runtime's limits are set on the container (docker inspect) and
// enforced by the kernel (the container's cgroup v1 files on the host).
func TestLimitsSetAndEnforced(t *testing.T) {
	docker := testimage.Docker(t)
	id := testimage.Build(t, docker)
	const nanoCPUs, memory = 500_000_000, 64 << 20
	for _, e := range testimage.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			e.Load(t, docker, id)
			ctx := context.Background()
			parent := "/rc-test-" + strings.ReplaceAll(e.Name, "/", "-")
			rt := e.Runtime()
			rt.Name, rt.CgroupParent, rt.NanoCPUs, rt.MemoryBytes = "limited", parent, nanoCPUs, memory
			running, err := runtime.Start(ctx, e.Engine(), testimage.Plugin(id), rt, checkOptions())
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				running.Stop(ctx)
				testimage.AssertNoContainers(t, e.Client)
			}()

			info, err := e.Client.ContainerInspect(ctx, running.ID())
			if err != nil {
				t.Fatal(err)
			}
			hc := info.HostConfig
			wantRuntime := e.OCIRuntime
			if e.Podman {
				wantRuntime = "oci" // Podman's compatible inspect says no more; the service's default was checked at start
			}
			if hc.Runtime != wantRuntime || hc.NanoCPUs != nanoCPUs || hc.Memory != memory || hc.CgroupParent != parent {
				t.Fatalf("inspect: runtime %s, NanoCPUs %d, Memory %d, CgroupParent %s", hc.Runtime, hc.NanoCPUs, hc.Memory, hc.CgroupParent)
			}
			if !hc.ReadonlyRootfs || hc.PidsLimit == nil || *hc.PidsLimit != runtime.DefaultPidsLimit ||
				len(hc.SecurityOpt) != 1 || hc.SecurityOpt[0] != "no-new-privileges" {
				t.Fatalf("hardening: readonly %v, pids %v, securityopt %v", hc.ReadonlyRootfs, hc.PidsLimit, hc.SecurityOpt)
			}
			if info.Config.Labels[runtime.LabelPluginRuntime] != "limited" || info.Config.Labels[runtime.LabelClusterID] != "test-cluster" {
				t.Fatalf("labels: %v", info.Config.Labels)
			}

			if hc.NetworkMode != "none" {
				t.Fatalf("network mode %q: a plugin container has loopback only", hc.NetworkMode)
			}
			assertCgroupLimits(t, e.CgroupDir(parent, running.ID()), nanoCPUs, memory, runtime.DefaultPidsLimit)
		})
	}
}

// Each way a plugin container can fail before the handshake gives an error
// that says which, and leaves no container behind.
func TestStartFailuresSayWhy(t *testing.T) {
	docker := testimage.Docker(t)
	id := testimage.Build(t, docker)
	good := testimage.Plugin(id)

	crashing := good
	crashing.Args = []string{"-no-such-flag"}
	wrongTag := good
	wrongTag.Version, wrongTag.SHA256 = "v9.9.9", ""
	wrongID := good
	wrongID.SHA256 = strings.Repeat("0", 64)
	noExec := good
	noExec.Command = "/nope"

	for _, e := range testimage.Engines(t) {
		e.Load(t, docker, id)
		on := func(change func(*runtime.Runtime)) runtime.Runtime {
			rt := e.Runtime()
			if change != nil {
				change(&rt)
			}
			return rt
		}
		unknownRuntime := []string{`the Docker Engine has no OCI runtime "no-such-runtime" (it has: `, "runc", "runsc"}
		if e.Podman {
			unknownRuntime = []string{"the Podman service at " + e.Address + " runs every container under its default OCI runtime " +
				e.OCIRuntime + ", whatever a container asks for, and this runtime asks for no-such-runtime"}
		}
		noExecutable := []string{"the engine refused the container", "/nope"}
		if e.OCIRuntime == "runsc" && !e.Podman {
			noExecutable = append(noExecutable, "failed to load /nope")
		}
		cases := []struct {
			name    string
			plugin  runtime.Plugin
			runtime runtime.Runtime
			is      error
			says    []string
		}{
			{"unknown OCI runtime", good, on(func(rt *runtime.Runtime) { rt.OCIRuntime = "no-such-runtime" }), runtime.ErrUnknownOCIRuntime, unknownRuntime},
			{"missing image", wrongTag, on(nil), runtime.ErrImageMissing,
				[]string{"no image " + testimage.Name + ":9.9.9 on the engine at " + dockerengine.Address(e.Address) + " (its pull_policy is never"}},
			{"SHA256 mismatch", wrongID, on(nil), runtime.ErrSHA256Mismatch,
				[]string{"image " + testimage.Name + ":" + testimage.Tag + " is " + id + ", not the registered sha256 sha256:" + strings.Repeat("0", 64)}},
			{"exits", crashing, on(nil), runtime.ErrContainerExited,
				[]string{"plugin container exited with code 1 before the plugin handshake", "flag provided but not defined: -no-such-flag"}},
			{"no executable", noExec, on(nil), runtime.ErrStartRefused, noExecutable},
		}
		if e.OCIRuntime == "runc" && !e.Podman { // Podman takes any number of CPUs
			cases = append(cases, []struct {
				name    string
				plugin  runtime.Plugin
				runtime runtime.Runtime
				is      error
				says    []string
			}{
				{"killed by its memory limit", good, on(func(rt *runtime.Runtime) { rt.MemoryBytes = 6 << 20 }), runtime.ErrContainerExited,
					// Before or after the handshake, as the kernel's timing falls.
					[]string{"exited with code 137 (SIGKILL from the kernel's OOM killer, as the engine reported: it exceeds its memory limit: memory_bytes 6291456)"}},
				{"more CPU than the host has", good, on(func(rt *runtime.Runtime) { rt.NanoCPUs = 1000 * 1_000_000_000 }), runtime.ErrStartRefused,
					[]string{"the engine refused the container"}},
			}...)
		}
		for _, tc := range cases {
			t.Run(e.Name+"/"+tc.name, func(t *testing.T) {
				// A failed start leaves no socket directory behind either.
				o := checkOptions()
				o.SocketRoot = vaulttest.ShortTempDir(t)
				_, err := runtime.Check(context.Background(), e.Engine(), tc.plugin, tc.runtime, o)
				if !errors.Is(err, tc.is) {
					t.Fatalf("error %v is not %v", err, tc.is)
				}
				t.Logf("%s: %v", tc.name, err)
				for _, want := range tc.says {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error does not say %q:\n%v", want, err)
					}
				}
				testimage.AssertNoContainers(t, e.Client)
				if left, _ := os.ReadDir(o.SocketRoot); len(left) != 0 {
					t.Errorf("a failed start left %d entries in the socket root, the first %s", len(left), left[0].Name())
				}
			})
		}
	}
}

// A fully qualified image name finds the same local image as the short one.
func TestQualifiedImageNameFindsTheImage(t *testing.T) {
	docker := testimage.Docker(t)
	id := testimage.Build(t, docker)
	p := testimage.Plugin(id)
	p.Image = "docker.io/library/" + p.Image
	if _, err := runtime.Check(context.Background(), dockerengine.With(docker, ""), p, runtime.Runtime{OCIRuntime: "runc"}, checkOptions()); err != nil {
		t.Fatal(err)
	}
	testimage.AssertNoContainers(t, docker)
}

// run-config is what a start really sends: the preview and docker inspect of
// a started container agree field by field, except the values that only
// exist at start, which the preview names.
func TestPreviewMatchesStartedContainer(t *testing.T) {
	docker := testimage.Docker(t)
	id := testimage.Build(t, docker)
	ctx := context.Background()
	p := testimage.Plugin(id)
	p.Env = []string{"MODE=fast", "MODE=slow", "TOKEN=x"}
	p.Command, p.Args = "/plugin", []string{"-tls-skip-verify"}
	rt := runtime.Runtime{Name: "limited", OCIRuntime: "runc", CgroupParent: "/rc-preview", NanoCPUs: 250_000_000, MemoryBytes: 32 << 20}

	previewed, err := runtime.PreviewRun(dockerengine.With(docker, ""), p, rt, checkOptions())
	if err != nil {
		t.Fatal(err)
	}
	preview := previewed.Request.(*dockerengine.RunConfig)
	running, err := runtime.Start(ctx, dockerengine.With(docker, ""), p, rt, checkOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		running.Stop(ctx)
		testimage.AssertNoContainers(t, docker)
	}()
	info, err := docker.ContainerInspect(ctx, running.ID())
	if err != nil {
		t.Fatal(err)
	}

	// The engine adds a default PATH to an image that sets none (ours is
	// FROM scratch): not part of the request.
	var env []string
	for _, kv := range info.Config.Env {
		if strings.HasPrefix(kv, "PLUGIN_CLIENT_CERT=") {
			kv = "PLUGIN_CLIENT_CERT=" + runtime.PlaceholderClientCert
		}
		if strings.HasPrefix(kv, "PATH=") {
			continue
		}
		env = append(env, kv)
	}
	want, got := preview.Config, info.Config
	hw, hg := preview.HostConfig, info.HostConfig
	for _, f := range []struct {
		name      string
		want, got interface{}
	}{
		{"Image", want.Image, got.Image},
		{"Env", want.Env, env},
		{"Entrypoint", []string(want.Entrypoint), []string(got.Entrypoint)},
		{"Cmd", []string(want.Cmd), []string(got.Cmd)},
		{"Labels", want.Labels, got.Labels},
		{"Runtime", hw.Runtime, hg.Runtime},
		{"AutoRemove", hw.AutoRemove, hg.AutoRemove},
		{"RestartPolicy", hw.RestartPolicy.Name, hg.RestartPolicy.Name},
		{"CapDrop", []string(hw.CapDrop), []string(hg.CapDrop)},
		{"CapAdd", []string(hw.CapAdd), []string(hg.CapAdd)},
		{"GroupAdd", hw.GroupAdd, hg.GroupAdd},
		{"SecurityOpt", hw.SecurityOpt, hg.SecurityOpt},
		{"ReadonlyRootfs", hw.ReadonlyRootfs, hg.ReadonlyRootfs},
		{"NanoCPUs", hw.NanoCPUs, hg.NanoCPUs},
		{"Memory", hw.Memory, hg.Memory},
		{"CgroupParent", hw.CgroupParent, hg.CgroupParent},
		{"PidsLimit", *hw.PidsLimit, *hg.PidsLimit},
		{"Mounts", len(hw.Mounts), len(hg.Mounts)},
		{"Mounts[0].Target", hw.Mounts[0].Target, hg.Mounts[0].Target},
		{"Mounts[0].Type", hw.Mounts[0].Type, hg.Mounts[0].Type},
		{"Mounts[0].BindOptions", *hw.Mounts[0].BindOptions, *hg.Mounts[0].BindOptions},
		{"Mounts[0].Source", hw.Mounts[0].Source, runtime.PlaceholderSocketDir},
	} {
		if !reflect.DeepEqual(f.want, f.got) {
			t.Errorf("%s: run-config %#v, started container %#v", f.name, f.want, f.got)
		}
	}
}

// assertCgroupLimits reads the container's cgroup files on the host, under
// cgroup v1 (one hierarchy per controller) or v2 (one unified hierarchy),
// with the cgroupfs driver, at the engine's layout (Engine.CgroupDir).
func assertCgroupLimits(t *testing.T, cgroup string, nanoCPUs, memory, pids int64) {
	t.Helper()
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	v2 := err == nil
	read := func(controller, file string) string {
		dir := filepath.Join("/sys/fs/cgroup", controller, cgroup)
		if v2 {
			dir = filepath.Join("/sys/fs/cgroup", cgroup)
		}
		data, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatalf("reading the container's cgroup: %v", err)
		}
		return strings.TrimSpace(string(data))
	}
	var memLimit, quota, period, pidsMax string
	if v2 {
		memLimit, pidsMax = read("", "memory.max"), read("", "pids.max")
		quota, period, _ = strings.Cut(read("", "cpu.max"), " ")
	} else {
		memLimit, pidsMax = read("memory", "memory.limit_in_bytes"), read("pids", "pids.max")
		quota, period = read("cpu", "cpu.cfs_quota_us"), read("cpu", "cpu.cfs_period_us")
	}
	if memLimit != strconv.FormatInt(memory, 10) {
		t.Errorf("memory limit = %s, want %d", memLimit, memory)
	}
	q, _ := strconv.ParseInt(quota, 10, 64)
	p, _ := strconv.ParseInt(period, 10, 64)
	if p == 0 || q*1_000_000_000/p != nanoCPUs {
		t.Errorf("CPU quota %s per period %s is not %d nano CPUs", quota, period, nanoCPUs)
	}
	if pidsMax != strconv.FormatInt(pids, 10) {
		t.Errorf("pids.max = %s, want %d", pidsMax, pids)
	}
}
