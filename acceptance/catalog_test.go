// Package acceptance proves the plugin in a real Vault server, driven by the
// real vault CLI.
package acceptance

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
)

type readResult struct {
	Data     map[string]interface{} `json:"data"`
	Warnings []string               `json:"warnings"`
}

func TestRuntimeCatalogThroughTheCLI(t *testing.T) {
	vaulttest.EachServer(t, testRuntimeCatalogThroughTheCLI)
}

func testRuntimeCatalogThroughTheCLI(t *testing.T, k vaulttest.Kind) {
	v := k.StartDev(t, "runtimes")

	v.MustRun(t, "write", "runtimes/catalog/container/limited",
		"oci_runtime=runc", "cgroup_parent=/examplelimit/", "cpu_nanos=10000000000", "memory_bytes=10000000")
	v.MustRun(t, "write", "-f", "runtimes/catalog/container/default")

	var read readResult
	v.MustJSON(t, &read, "read", "runtimes/catalog/container/limited")
	want := map[string]interface{}{
		"name": "limited", "type": "container", "oci_runtime": "runc", "cgroup_parent": "/examplelimit/",
		"cpu_nanos": float64(10000000000), "memory_bytes": float64(10000000), "rootless": false,
	}
	assertSubset(t, read.Data, want)

	v.MustJSON(t, &read, "read", "runtimes/catalog/container/default")
	if read.Data["oci_runtime"] != "runsc" {
		t.Fatalf("default oci_runtime = %v, want runsc", read.Data["oci_runtime"])
	}

	// vault list prints the names (Vault's own catalog prints nothing).
	out := v.MustRun(t, "list", "runtimes/catalog")
	if !strings.Contains(out, "default") || !strings.Contains(out, "limited") {
		t.Fatalf("vault list output:\n%s", out)
	}
	var keys []string
	v.MustJSON(t, &keys, "list", "runtimes/catalog/container")
	if !reflect.DeepEqual(keys, []string{"default", "limited"}) {
		t.Fatalf("vault list runtimes/catalog/container = %v", keys)
	}
	var listed readResult
	v.MustJSON(t, &listed, "read", "runtimes/catalog", "type=container")
	if rs, _ := listed.Data["runtimes"].([]interface{}); len(rs) != 2 {
		t.Fatalf("read catalog: runtimes = %#v", listed.Data["runtimes"])
	}

	v.MustRun(t, "patch", "runtimes/catalog/container/limited", "cpu_nanos=20000000000")
	v.MustJSON(t, &read, "read", "runtimes/catalog/container/limited")
	want["cpu_nanos"] = float64(20000000000)
	assertSubset(t, read.Data, want)

	v.MustRun(t, "delete", "runtimes/catalog/container/limited")
	if _, _, code := v.Run(t, "read", "runtimes/catalog/container/limited"); code != 2 {
		t.Fatalf("read after delete exited %d, want 2 (no value)", code)
	}
	v.MustRun(t, "delete", "runtimes/catalog/container/limited") // missing: still a success
}

func TestRuntimeCatalogErrorsThroughTheCLI(t *testing.T) {
	vaulttest.EachServer(t, testRuntimeCatalogErrorsThroughTheCLI)
}

func testRuntimeCatalogErrorsThroughTheCLI(t *testing.T, k vaulttest.Kind) {
	v := k.StartDev(t, "runtimes")
	v.MustRun(t, "write", "runtimes/catalog/container/kept", "cpu_nanos=50000000")

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"write", "runtimes/catalog/container/kept", "cpu_nanos=-1"}, "runtime cpu in nanos cannot be negative"},
		{[]string{"write", "runtimes/catalog/container/kept", "memory_bytes=-1"}, "runtime memory in bytes cannot be negative"},
		{[]string{"write", "runtimes/catalog/container/kept", "memory_bytes=100"}, "memory_bytes 100 is too small"},
		{[]string{"write", "-f", "runtimes/catalog/foo/kept"}, `"foo" is not a supported plugin runtime type`},
		{[]string{"write", "-f", "runtimes/catalog/container/-x"}, `invalid runtime name "-x"`},
		{[]string{"list", "runtimes/catalog/foo"}, `"foo" is not a supported plugin runtime type`},
		{[]string{"read", "runtimes/catalog", "type=Container"}, `"Container" is not a supported plugin runtime type`},
	} {
		_, errOut, code := v.Run(t, tc.args...)
		if code != 2 || !strings.Contains(errOut, "Code: 400") || !strings.Contains(errOut, tc.want) {
			t.Errorf("vault %v: exit %d, stderr:\n%s\nwant a 400 saying %q", tc.args, code, errOut, tc.want)
		}
	}
	var read readResult
	v.MustJSON(t, &read, "read", "runtimes/catalog/container/kept")
	if read.Data["cpu_nanos"] != float64(50000000) {
		t.Fatalf("rejected writes changed the runtime: %#v", read.Data)
	}

	_, errOut, code := v.Run(t, "patch", "runtimes/catalog/container/missing", "cpu_nanos=10000000")
	if code != 2 || !strings.Contains(errOut, "Code: 404") {
		t.Fatalf("patch of a missing runtime: exit %d\n%s", code, errOut)
	}

	out, errOut, code := v.Run(t, "write", "runtimes/catalog/container/warned", "rootless=true", "memory_bytes=10000000", "colour=blue")
	// The CLI wraps long warnings: compare with the white space folded.
	printed := strings.Join(strings.Fields(out+errOut), " ")
	if code != 0 || !strings.Contains(printed, "not supported with rootless Docker") || !strings.Contains(printed, "unrecognized parameters: [colour]") {
		t.Fatalf("warnings: exit %d\n%s%s", code, out, errOut)
	}
}

// The plugin's catalog and Vault's built-in one, on the same server, store
// and return the same settings.
func TestRuntimeCatalogMatchesVaultBuiltin(t *testing.T) {
	k := vaulttest.Vault // OpenBao has no built-in runtime catalog to compare with
	v := k.StartDev(t, "runtimes")
	args := []string{"oci_runtime=runc", "cgroup_parent=/examplelimit/", "cpu_nanos=10000000000", "memory_bytes=10000000", "rootless=true"}
	v.MustRun(t, append([]string{"write", "sys/plugins/runtimes/catalog/container/same"}, args...)...)
	v.MustRun(t, append([]string{"write", "runtimes/catalog/container/same"}, args...)...)

	var builtin, ours readResult
	v.MustJSON(t, &builtin, "read", "sys/plugins/runtimes/catalog/container/same")
	v.MustJSON(t, &ours, "read", "runtimes/catalog/container/same")
	for key, want := range builtin.Data {
		if !reflect.DeepEqual(ours.Data[key], want) {
			t.Errorf("%s: plugin %#v, Vault %#v", key, ours.Data[key], want)
		}
	}
}

func TestRuntimeCatalogNeedsSudo(t *testing.T) { vaulttest.EachServer(t, testRuntimeCatalogNeedsSudo) }

func testRuntimeCatalogNeedsSudo(t *testing.T, k vaulttest.Kind) {
	v := k.StartDev(t, "runtimes")
	v.MustRun(t, "write", "-f", "runtimes/catalog/container/existing")

	const caps = `"create", "read", "update", "patch", "delete", "list"`
	policy := func(extra string) string {
		var body strings.Builder
		for _, p := range []string{"runtimes/catalog", "runtimes/catalog/*", "runtimes/plugins/catalog", "runtimes/plugins/catalog/*"} {
			fmt.Fprintf(&body, "path %q { capabilities = [%s%s] }\n", p, caps, extra)
		}
		return body.String()
	}
	writePolicy := func(name, body string) {
		_, errOut, code := v.RunInput(t, v.Token, strings.NewReader(body), "policy", "write", name, "-")
		if code != 0 {
			t.Fatalf("policy write %s: %s", name, errOut)
		}
	}
	writePolicy("catalog-no-sudo", policy(""))
	writePolicy("catalog-sudo", policy(`, "sudo"`))
	token := func(policyName string) string {
		return strings.TrimSpace(v.MustRun(t, "token", "create", "-field=token", "-policy="+policyName))
	}
	noSudo, sudo := token("catalog-no-sudo"), token("catalog-sudo")

	ops := [][]string{
		{"write", "runtimes/catalog/container/r", "cpu_nanos=10000000"},
		{"read", "runtimes/catalog/container/existing"},
		{"patch", "runtimes/catalog/container/existing", "cpu_nanos=20000000"},
		{"list", "runtimes/catalog"},
		{"list", "runtimes/catalog/container"},
		{"read", "runtimes/catalog"},
		{"delete", "runtimes/catalog/container/existing"},
		{"write", "runtimes/plugins/catalog/secret/p", "oci_image=example/kv", "version=1.0.0"},
		{"read", "runtimes/plugins/catalog/secret/p"},
		{"patch", "runtimes/plugins/catalog/secret/p", "version=1.0.1"},
		{"read", "runtimes/plugins/catalog/secret/p/run-config"},
		{"list", "runtimes/plugins/catalog"},
		{"list", "runtimes/plugins/catalog/secret"},
		{"read", "runtimes/plugins/catalog"},
		{"delete", "runtimes/plugins/catalog/secret/p"},
	}
	for _, op := range ops {
		_, errOut, code := v.RunAs(t, noSudo, op...)
		if code != 2 || !strings.Contains(errOut, "Code: 403") || !strings.Contains(errOut, "permission denied") {
			t.Errorf("without sudo, vault %v: exit %d, want 403 permission denied\n%s", op, code, errOut)
		}
	}
	for _, op := range ops {
		if out, errOut, code := v.RunAs(t, sudo, op...); code != 0 {
			t.Errorf("with sudo, vault %v: exit %d\n%s%s", op, code, out, errOut)
		}
	}
}

func TestRuntimeSurvivesAServerRestart(t *testing.T) {
	vaulttest.EachServer(t, testRuntimeSurvivesAServerRestart)
}

func testRuntimeSurvivesAServerRestart(t *testing.T, k vaulttest.Kind) {
	dir := vaulttest.ShortTempDir(t)
	port := vaulttest.FreePort(t)

	v := k.StartPersistent(t, dir, port, "runtimes")
	v.MustRun(t, "write", "runtimes/catalog/container/durable", "oci_runtime=runc", "memory_bytes=10000000")
	v.Stop(t)

	v = k.StartPersistent(t, dir, port, "runtimes")
	var read readResult
	v.MustJSON(t, &read, "read", "runtimes/catalog/container/durable")
	assertSubset(t, read.Data, map[string]interface{}{"oci_runtime": "runc", "memory_bytes": float64(10000000)})
	var keys []string
	v.MustJSON(t, &keys, "list", "runtimes/catalog")
	if !reflect.DeepEqual(keys, []string{"durable"}) {
		t.Fatalf("after restart, list = %v", keys)
	}
}

func assertSubset(t *testing.T, got, want map[string]interface{}) {
	t.Helper()
	for k, w := range want {
		if !reflect.DeepEqual(got[k], w) {
			t.Errorf("%s = %#v, want %#v (all: %#v)", k, got[k], w, got)
		}
	}
}

// Vault's generated OpenAPI document describes every path and field.
func TestOpenAPIDescribesThePlugin(t *testing.T) {
	vaulttest.EachServer(t, testOpenAPIDescribesThePlugin)
}

func testOpenAPIDescribesThePlugin(t *testing.T, k vaulttest.Kind) {
	v := k.StartDev(t, "runtimes")
	var doc struct {
		Data struct {
			Paths map[string]map[string]interface{} `json:"paths"`
		} `json:"data"`
	}
	v.MustJSON(t, &doc, "read", "sys/internal/specs/openapi")
	for _, path := range []string{
		"/runtimes/catalog/", "/runtimes/catalog/{type}/{name}",
		"/runtimes/plugins/catalog/{type}/{name}", "/runtimes/plugins/catalog/{type}/{name}/check",
		"/runtimes/hosted/{name}", "/runtimes/hosted/",
	} {
		item, ok := doc.Data.Paths[path]
		if !ok {
			t.Errorf("OpenAPI has no %s", path)
			continue
		}
		if item["description"] == "" || item["description"] == nil {
			t.Errorf("%s has no description", path)
		}
		params, _ := item["parameters"].([]interface{}) // absent where the path captures nothing
		for _, param := range params {
			if p := param.(map[string]interface{}); p["description"] == "" || p["description"] == nil {
				t.Errorf("%s parameter %v has no description", path, p["name"])
			}
		}
	}
	post, _ := doc.Data.Paths["/runtimes/catalog/{type}/{name}"]["post"].(map[string]interface{})
	if post == nil || post["requestBody"] == nil || post["summary"] == nil {
		t.Errorf("POST /runtimes/catalog/{type}/{name} lacks a summary or request schema: %v", post)
	}
}
