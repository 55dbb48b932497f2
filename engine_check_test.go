package runtimecatalog

import (
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// A runtime is checked against its engine when written: what the engine
// lacks, or an engine that does not answer, is a warning naming it, and the
// runtime is stored all the same.
func TestRuntimeWriteIsCheckedAgainstItsEngine(t *testing.T) {
	b, s := newTestBackend(t)
	for _, tc := range []struct {
		name, oci, engine string
		warning           string // "" for none
	}{
		{"known", "runc", "", ""},
		{"default-runsc", "", "", ""},
		{"typo", "runcc", "", "the engine at unix:///var/run/docker.sock has no OCI runtime runcc; it has runc, runsc; the runtime is stored, and its plugins will not start there until this changes"},
		{"only-default", "runc", fakeOnlyDefaultAddress, ""},
		{"only-default-other", "runsc", fakeOnlyDefaultAddress, "this engine runs only runc, not runsc; the runtime is stored, and its plugins will not start there until this changes"},
		{"withheld", "runsc", fakeWithheldAddress, "the engine does not say which OCI runtimes it has: not for this plugin to see; the runtime is stored, and its plugins start if the engine runs runsc"},
		{"down", "runc", fakeDownAddress, "the engine at unix:///run/nothing.sock could not be reached: dial unix /run/nothing.sock: connect: no such file or directory; the runtime is stored, and its plugins cannot start until the engine answers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("DOCKER_HOST", "")
			data := map[string]interface{}{"oci_runtime": tc.oci}
			if tc.engine != "" {
				data["engine"] = tc.engine
			}
			resp := mustDo(t, b, s, logical.UpdateOperation, "catalog/container/"+tc.name, data)
			var warnings []string
			if resp != nil {
				warnings = resp.Warnings
			}
			if tc.warning == "" && len(warnings) > 0 || tc.warning != "" && !reflect.DeepEqual(warnings, []string{tc.warning}) {
				t.Fatalf("warnings = %q, want %q", warnings, tc.warning)
			}
			// Stored whatever the engine said.
			read := mustDo(t, b, s, logical.ReadOperation, "catalog/container/"+tc.name, nil)
			if got := read.Data["engine"]; tc.engine != "" && got != tc.engine {
				t.Fatalf("engine read back %v", got)
			}
		})
	}
}

func TestRuntimeReadCanAskItsEngine(t *testing.T) {
	b, s := newTestBackend(t)
	mustDo(t, b, s, logical.UpdateOperation, "catalog/container/ok", map[string]interface{}{"oci_runtime": "runsc"})
	mustDo(t, b, s, logical.UpdateOperation, "catalog/container/podman", map[string]interface{}{"oci_runtime": "runsc", "engine": fakeOnlyDefaultAddress})
	mustDo(t, b, s, logical.UpdateOperation, "catalog/container/down", map[string]interface{}{"oci_runtime": "runc", "engine": fakeDownAddress})

	// A plain read does not ask, and shows nothing of the engine.
	plain := mustDo(t, b, s, logical.ReadOperation, "catalog/container/ok", nil)
	if _, asked := plain.Data["engine_runs_oci_runtime"]; asked {
		t.Fatalf("a plain read asked the engine: %v", plain.Data)
	}
	check := map[string]interface{}{"check_engine": true}
	ok := mustDo(t, b, s, logical.ReadOperation, "catalog/container/ok", check)
	if ok.Data["engine_runs_oci_runtime"] != true || !reflect.DeepEqual(ok.Data["engine_oci_runtimes"], []string{"runc", "runsc"}) {
		t.Fatalf("ok: %v", ok.Data)
	}
	podman := mustDo(t, b, s, logical.ReadOperation, "catalog/container/podman", check)
	if podman.Data["engine_runs_oci_runtime"] != false || !reflect.DeepEqual(podman.Data["engine_oci_runtimes"], []string{"runc"}) {
		t.Fatalf("podman: %v", podman.Data)
	}
	down := mustDo(t, b, s, logical.ReadOperation, "catalog/container/down", check)
	if _, asked := down.Data["engine_runs_oci_runtime"]; asked || len(down.Warnings) != 1 ||
		!strings.Contains(down.Warnings[0], "the engine at unix:///run/nothing.sock could not be reached") {
		t.Fatalf("down: %v %q", down.Data, down.Warnings)
	}
}

func TestRuntimeEngineMustBeAUnixSocket(t *testing.T) {
	b, s := newTestBackend(t)
	for _, bad := range []string{"tcp://127.0.0.1:2375", "unix://relative.sock", "/run/podman/podman.sock", "unix://" + strings.Repeat("x", 300)} {
		got := errorOf(t, b, s, logical.UpdateOperation, "catalog/container/r", map[string]interface{}{"engine": bad})
		if !strings.Contains(got, `is not an engine address: unix:// and the absolute path of a socket speaking the Docker Engine API`) {
			t.Errorf("engine %q: %s", bad, got)
		}
	}
}

// A Kubernetes engine's address names a namespace, and a runtime on it
// cannot ask for what a pod cannot do: both refused when written, saying
// why.
func TestKubernetesEngineRuntimeRules(t *testing.T) {
	b, s := newTestBackend(t)
	for bad, says := range map[string]string{
		"kubernetes://":                   "names no namespace",
		"kubernetes://Bad_NS":             "is not a Kubernetes namespace name",
		"kubernetes://plugins/rel/../cfg": "is not clean",
	} {
		got := errorOf(t, b, s, logical.UpdateOperation, "catalog/container/r", map[string]interface{}{"engine": bad})
		if !strings.Contains(got, says) || !strings.Contains(got, "kubernetes://NAMESPACE") {
			t.Errorf("engine %q: %s", bad, got)
		}
	}
	got := errorOf(t, b, s, logical.UpdateOperation, "catalog/container/r", map[string]interface{}{
		"engine": "kubernetes://plugins/etc/kubeconfig", "cgroup_parent": "/vault"})
	if !strings.Contains(got, `cgroup_parent "/vault" has no meaning on Kubernetes`) || !strings.Contains(got, "ResourceQuota") {
		t.Errorf("cgroup_parent on Kubernetes: %s", got)
	}
	if resp, err := do(t, b, s, logical.ReadOperation, "catalog/container/r", nil); err == nil && resp != nil {
		t.Errorf("a refused runtime was stored: %v", resp.Data)
	}
}

// An engine is asked once per runtime.FactsTTL, not on every write: the
// Docker Engine's info call takes 10 to 80 ms.
func TestEngineAnswersAreKeptForAWhile(t *testing.T) {
	b, s := newTestBackend(t)
	before := fakeEngineAsked.Load()
	for i := 0; i < 5; i++ {
		mustDo(t, b, s, logical.UpdateOperation, "catalog/container/r", map[string]interface{}{"oci_runtime": "runcc"})
		mustDo(t, b, s, logical.UpdateOperation, "catalog/container/d", map[string]interface{}{"engine": fakeDownAddress})
	}
	if asked := fakeEngineAsked.Load() - before; asked != 2 {
		t.Fatalf("10 writes asked the engines %d times, want 2 (one per engine)", asked)
	}
	// A read that asks for the engine's word asks now.
	mustDo(t, b, s, logical.ReadOperation, "catalog/container/r", map[string]interface{}{"check_engine": true})
	if asked := fakeEngineAsked.Load() - before; asked != 3 {
		t.Fatalf("check_engine did not ask the engine again (%d asks)", asked)
	}
}
