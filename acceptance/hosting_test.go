package acceptance

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/testimage"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
)

// hostKV registers HashiCorp's kv image with a runtime of the OCI runtime
// given and hosts it at runtimes/hosted/NAME for each name, kv v2 when the
// name says so.
func hostKV(t *testing.T, v *vaulttest.Server, kvID, ociRuntime string, names ...string) {
	t.Helper()
	hostKVOn(t, v, kvID, testimage.Engine{OCIRuntime: ociRuntime}, names...)
}

// hostKVOn is hostKV on an engine: the runtime is named after the OCI
// runtime, and says which engine when it is not the default.
func hostKVOn(t *testing.T, v *vaulttest.Server, kvID string, e testimage.Engine, names ...string) {
	t.Helper()
	rt := e.OCIRuntime
	args := []string{"write", "runtimes/catalog/container/" + rt, "oci_runtime=" + e.OCIRuntime, "memory_bytes=134217728"}
	if e.Address != "" {
		args = append(args, "engine="+e.Address)
	}
	v.MustRun(t, args...)
	v.MustRun(t, "write", "runtimes/plugins/catalog/secret/kv", "oci_image="+testimage.KVName,
		"version="+testimage.KVVersion, "sha256="+kvID, "runtime="+rt)
	for _, name := range names {
		args := []string{"write", "runtimes/hosted/" + name, "plugin=kv", "description=kv " + name}
		if strings.HasPrefix(name, "kv2") {
			args = append(args, "options=version=2")
		}
		v.MustRun(t, args...)
	}
}

// eventually retries f for a while: kv v2 answers "upgrading" for a moment
// after its mount while its Initialize upgrade completes.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type mountState struct {
	Data struct {
		State       string   `json:"state"`
		Reason      string   `json:"reason"`
		ContainerID string   `json:"container_id"`
		OCIRuntime  string   `json:"oci_runtime"`
		Restarts    int      `json:"restarts"`
		SharedWith  []string `json:"shared_with"`
		Outdated    bool     `json:"outdated"`
		Health      health   `json:"health"`
	} `json:"data"`
}

// health is the health of a hosted mount's read.
type health struct {
	MemoryBytes      *float64       `json:"memory_bytes"`
	MemoryLimitBytes *float64       `json:"memory_limit_bytes"`
	CPUSeconds       *float64       `json:"cpu_seconds"`
	Pids             *float64       `json:"pids"`
	OOMKills         *float64       `json:"oom_kills"`
	Unavailable      []string       `json:"unavailable"`
	UsageError       string         `json:"usage_error"`
	RestartCauses    map[string]int `json:"restart_causes"`
	FailedStarts     int            `json:"failed_starts"`
	Exits            []struct {
		Time     string   `json:"time"`
		ExitCode int      `json:"exit_code"`
		Reason   string   `json:"reason"`
		Signal   int      `json:"signal"`
		Output   []string `json:"output"`
	} `json:"exits"`
}

func TestHostedKV(t *testing.T) { vaulttest.EachServer(t, testHostedKV) }

func testHostedKV(t *testing.T, k vaulttest.Kind) {
	docker := testimage.Docker(t)
	kvID := testimage.BuildKV(t, docker)
	for _, e := range testimage.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			e.Load(t, docker, kvID)
			v := k.StartDev(t, "runtimes")
			hostKVOn(t, v, kvID, e, "kv1", "kv2")

			// kv v1: write, read, list, delete.
			v.MustRun(t, "write", "runtimes/mounts/kv1/app/db", "password=hunter2")
			var read readResult
			v.MustJSON(t, &read, "read", "runtimes/mounts/kv1/app/db")
			if read.Data["password"] != "hunter2" {
				t.Fatalf("kv1 read: %#v", read.Data)
			}
			var keys []string
			v.MustJSON(t, &keys, "list", "runtimes/mounts/kv1/")
			if !reflect.DeepEqual(keys, []string{"app/"}) {
				t.Fatalf("kv1 list = %v", keys)
			}

			// kv v2: its Initialize upgrade completes; write, read, patch,
			// list, delete through the versioned paths.
			eventually(t, "kv2 write", func() error {
				return writeJSON(t, v, "write", "runtimes/mounts/kv2/data/app/db", `{"data":{"user":"app","password":"one"}}`)
			})
			if err := writeJSON(t, v, "patch", "runtimes/mounts/kv2/data/app/db", `{"data":{"password":"two"}}`); err != nil {
				t.Fatalf("kv2 patch: %v", err)
			}
			var versioned struct {
				Data struct {
					Data     map[string]interface{} `json:"data"`
					Metadata map[string]interface{} `json:"metadata"`
				} `json:"data"`
			}
			v.MustJSON(t, &versioned, "read", "runtimes/mounts/kv2/data/app/db")
			if versioned.Data.Data["user"] != "app" || versioned.Data.Data["password"] != "two" || versioned.Data.Metadata["version"] != float64(2) {
				t.Fatalf("kv2 read after patch: %#v", versioned.Data)
			}
			v.MustJSON(t, &keys, "list", "runtimes/mounts/kv2/metadata/app")
			if !reflect.DeepEqual(keys, []string{"db"}) {
				t.Fatalf("kv2 list = %v", keys)
			}
			// The mounts keep their data apart.
			if _, _, code := v.Run(t, "read", "runtimes/mounts/kv1/data/app/db"); code != 2 {
				t.Fatalf("kv1 sees kv2's data (exit %d)", code)
			}

			// Both mounts are served by one container, under the runtime.
			var s1, s2 mountState
			v.MustJSON(t, &s1, "read", "runtimes/hosted/kv1")
			v.MustJSON(t, &s2, "read", "runtimes/hosted/kv2")
			if s1.Data.State != "running" || s1.Data.ContainerID == "" || s1.Data.ContainerID != s2.Data.ContainerID ||
				s1.Data.OCIRuntime != e.OCIRuntime || !reflect.DeepEqual(s1.Data.SharedWith, []string{"kv2"}) {
				t.Fatalf("mount states: %+v / %+v", s1.Data, s2.Data)
			}
			info, err := e.Client.ContainerInspect(context.Background(), s1.Data.ContainerID)
			wantRuntime := e.OCIRuntime
			if e.Podman {
				wantRuntime = "oci" // all Podman's inspect says: the service's default was checked at start
			}
			if err != nil || info.HostConfig.Runtime != wantRuntime || info.HostConfig.Memory != 134217728 {
				t.Fatalf("the container: %v %+v", err, info.HostConfig)
			}
			checkFigures(t, sampledHealth(t, v, "runtimes/hosted/kv1"), e.Podman, 134217728)

			// Killed out of band: the next request restarts it and succeeds.
			if out, err := runDocker(e.DockerArgs("kill", s1.Data.ContainerID)...); err != nil {
				t.Fatalf("docker kill: %v %s", err, out)
			}
			v.MustJSON(t, &read, "read", "runtimes/mounts/kv1/app/db")
			if read.Data["password"] != "hunter2" {
				t.Fatalf("kv1 read after the kill: %#v", read.Data)
			}
			v.MustJSON(t, &versioned, "read", "runtimes/mounts/kv2/data/app/db")
			if versioned.Data.Data["password"] != "two" {
				t.Fatalf("kv2 read after the kill: %#v", versioned.Data)
			}
			v.MustJSON(t, &s1, "read", "runtimes/hosted/kv1")
			if s1.Data.Restarts != 1 || s1.Data.ContainerID == s2.Data.ContainerID {
				t.Fatalf("after the kill: %+v", s1.Data)
			}
			// The kill, in the mount's history: Docker's oom events tell it
			// from a memory kill; Podman sends none, and the read says so.
			wantReason := "signal"
			if e.Podman {
				wantReason = "memory_limit_or_signal"
			}
			if h := s1.Data.Health; len(h.Exits) != 1 || h.Exits[0].Reason != wantReason || h.Exits[0].ExitCode != 137 || h.Exits[0].Signal != 9 ||
				h.RestartCauses[wantReason] != 1 {
				t.Fatalf("the kill in the mount's health: %+v", h)
			}

			v.MustRun(t, "delete", "runtimes/mounts/kv1/app/db")
			v.MustRun(t, "delete", "runtimes/hosted/kv1")
			v.MustRun(t, "delete", "runtimes/hosted/kv2")
			if _, errOut, code := v.Run(t, "read", "runtimes/mounts/kv1/app/db"); code != 2 || !strings.Contains(errOut, "No value found") {
				t.Fatalf("read of a deleted mount: exit %d %s", code, errOut)
			}
			v.Stop(t)
			testimage.AssertNoContainersOf(t, e.Client, v.ClusterID)
		})
	}
}

// sampledHealth is the health read at path once the engine's first sample
// of the container's figures is in (one a second): until then they are
// unavailable, with the reason.
func sampledHealth(t *testing.T, v *vaulttest.Server, path string) health {
	t.Helper()
	var st mountState
	eventually(t, "a sample of the container's figures at "+path, func() error {
		v.MustJSON(t, &st, "read", path)
		if st.Data.Health.UsageError != "" {
			return errors.New(st.Data.Health.UsageError)
		}
		return nil
	})
	return st.Data.Health
}

// checkFigures holds a running mount's figures to what its engine can
// give: each is there and sane, or named as unavailable, never 0. Docker
// gives them all; Podman no OOM kills (it sends no oom event).
func checkFigures(t *testing.T, h health, podman bool, limit float64) {
	t.Helper()
	unavailable := map[string]bool{}
	for _, name := range h.Unavailable {
		unavailable[name] = true
	}
	for name, figure := range map[string]*float64{"memory_bytes": h.MemoryBytes, "memory_limit_bytes": h.MemoryLimitBytes,
		"cpu_seconds": h.CPUSeconds, "pids": h.Pids, "oom_kills": h.OOMKills} {
		switch {
		case figure == nil && !unavailable[name]:
			t.Errorf("%s neither given nor named unavailable: %+v", name, h)
		case figure != nil && unavailable[name]:
			t.Errorf("%s given and named unavailable: %+v", name, h)
		case figure == nil:
		case name == "oom_kills" && *figure != 0, name != "oom_kills" && *figure <= 0:
			t.Errorf("%s = %v: %+v", name, *figure, h)
		case name == "memory_bytes" && *figure > limit, name == "memory_limit_bytes" && *figure != limit:
			t.Errorf("%s = %v against a limit of %v", name, *figure, limit)
		}
	}
	if podman != unavailable["oom_kills"] {
		t.Errorf("oom_kills named unavailable: %v, on Podman: %v (%+v)", unavailable["oom_kills"], podman, h)
	}
	if !podman && len(h.Unavailable) > 0 {
		t.Errorf("the Docker Engine gives every figure, yet %v are named unavailable", h.Unavailable)
	}
	t.Logf("figures: memory %v of %v, cpu %v s, pids %v, oom kills %v, unavailable %v", deref(h.MemoryBytes), deref(h.MemoryLimitBytes),
		deref(h.CPUSeconds), deref(h.Pids), deref(h.OOMKills), h.Unavailable)
}

func deref(f *float64) any {
	if f == nil {
		return "-"
	}
	return *f
}

// writeJSON sends body as the request's JSON, as kv v2 wants its data.
func writeJSON(t *testing.T, v *vaulttest.Server, verb, path, body string) error {
	t.Helper()
	if _, errOut, code := v.RunInput(t, v.Token, strings.NewReader(body), verb, path, "-"); code != 0 {
		return fmt.Errorf("vault %s %s: exit %d: %s", verb, path, code, errOut)
	}
	return nil
}

func runDocker(args ...string) (string, error) {
	out, err := exec.Command("docker", args...).CombinedOutput()
	return string(out), err
}
