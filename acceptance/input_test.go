package acceptance

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/testimage"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
)

// httpDo sends a request as curl would (no Accept-Encoding, the body as
// given) and returns the status and body.
func httpDo(t *testing.T, v *vaulttest.Server, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, v.Addr+"/v1/"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Vault-Token", v.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

func TestBadInputThroughTheCLIAndHTTP(t *testing.T) {
	vaulttest.EachServer(t, testBadInputThroughTheCLIAndHTTP)
}

func testBadInputThroughTheCLIAndHTTP(t *testing.T, k vaulttest.Kind) {
	v := k.StartDev(t, "runtimes")

	// A misspelled field: the write succeeds and says what it ignored.
	out, errOut, code := v.Run(t, "write", "runtimes/catalog/container/r", "cpu=1")
	if code != 0 || !strings.Contains(folded(out+errOut), "Endpoint ignored these unrecognized parameters: [cpu]") {
		t.Fatalf("write with cpu=: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = v.Run(t, "patch", "runtimes/catalog/container/r", "memroy_bytes=1")
	if code != 0 || !strings.Contains(folded(out+errOut), "unrecognized parameters: [memroy_bytes]") {
		t.Fatalf("patch with memroy_bytes=: exit %d\n%s%s", code, out, errOut)
	}
	status, body := httpDo(t, v, "POST", "runtimes/catalog/container/r", `{"cpu": 1}`)
	if status != 200 || !strings.Contains(body, "unrecognized parameters: [cpu]") {
		t.Fatalf("HTTP write with cpu: %d %s", status, body)
	}

	// Integers: exact over the whole int64 range when sent as text, a 400
	// naming the field when a JSON number cannot be exact or is no integer.
	for _, tc := range []struct{ body, says string }{
		{`{"memory_bytes": 9007199254740993}`, "memory_bytes"},
		{`{"memory_bytes": 9223372036854775807}`, "memory_bytes"},
		{`{"memory_bytes": 7000000.9}`, "memory_bytes"},
		{`{"cpu_nanos": "010000000"}`, "cpu_nanos"},
		{`{"cpu_nanos": 5000}`, "cpu_nanos 5000 is too small"},
		{`{"oci_runtime": true}`, "oci_runtime must be a string"},
	} {
		status, body := httpDo(t, v, "POST", "runtimes/catalog/container/r", tc.body)
		if status != 400 || !strings.Contains(body, tc.says) {
			t.Errorf("HTTP write %s: %d %s", tc.body, status, body)
		}
	}
	v.MustRun(t, "write", "runtimes/catalog/container/big", "memory_bytes=9007199254740993", "cpu_nanos=9223372036854775807")
	for _, path := range []string{"runtimes/catalog/container/big", "runtimes/catalog?list=true"} {
		_, body := httpDo(t, v, "GET", path, "")
		if !strings.Contains(body, `"memory_bytes":9007199254740993`) || !strings.Contains(body, `"cpu_nanos":9223372036854775807`) {
			t.Errorf("GET %s does not give the exact integers: %s", path, body)
		}
	}
	if _, errOut, code := v.Run(t, "write", "-f", "runtimes/catalog/container/a..b"); code != 2 || !strings.Contains(errOut, "Code: 400") {
		t.Errorf("name a..b: exit %d %s", code, errOut)
	}

	// run-config never shows a registered env value.
	v.MustRun(t, "write", "runtimes/plugins/catalog/secret/p", "oci_image=example/kv", "version=1.0.0", "env=TOKEN=hunter2")
	out = v.MustRun(t, "read", "-format=json", "runtimes/plugins/catalog/secret/p/run-config")
	// The CLI's JSON escapes '<' as \u003c.
	if strings.Contains(out, "hunter2") || !strings.Contains(out, `TOKEN=\u003credacted`) && !strings.Contains(out, "TOKEN=<redacted") {
		t.Errorf("run-config:\n%s", out)
	}
	if _, errOut, code := v.Run(t, "write", "runtimes/plugins/catalog/secret/p", "oci_image=example/kv", "version=1.0.0+build"); code != 2 || !strings.Contains(errOut, "cannot be an image tag") {
		t.Errorf("version 1.0.0+build: exit %d %s", code, errOut)
	}
}

// Failed checks say why under runc and runsc, and leave neither a container
// nor a socket directory behind.
func TestFailedChecksSayWhyAndLeaveNothing(t *testing.T) {
	vaulttest.EachServer(t, testFailedChecksSayWhyAndLeaveNothing)
}

func testFailedChecksSayWhyAndLeaveNothing(t *testing.T, k vaulttest.Kind) {
	docker := testimage.Docker(t)
	id := testimage.Build(t, docker)
	v := k.StartDev(t, "runtimes")
	// The plugin's socket directories: <its TMPDIR>/rc-<pid>-<start>/plugin-dir*.
	socketDirs := func() int {
		dirs, _ := filepath.Glob(filepath.Join(v.TempDir, "rc-*", "plugin-dir*"))
		return len(dirs)
	}
	before := socketDirs()
	v.MustRun(t, "write", "runtimes/catalog/container/runc", "oci_runtime=runc")
	v.MustRun(t, "write", "-f", "runtimes/catalog/container/runsc")
	v.MustRun(t, "write", "runtimes/catalog/container/tiny", "oci_runtime=runc", "memory_bytes=6291456")
	v.MustRun(t, "write", "runtimes/catalog/container/huge", "oci_runtime=runc", "cpu_nanos=1000000000000")
	for _, tc := range []struct{ name, runtime, command, says string }{
		{"noexec-runc", "runc", "/nope", "the engine refused the container"},
		{"noexec-runsc", "runsc", "/nope", "failed to load /nope"},
		{"oom", "tiny", "", "exceeds its memory limit: memory_bytes 6291456"},
		{"cpus", "huge", "", "Range of CPUs"},
	} {
		args := []string{"write", "runtimes/plugins/catalog/secret/" + tc.name, "oci_image=" + testimage.Name,
			"version=" + testimage.Version, "sha256=" + id, "runtime=" + tc.runtime}
		if tc.command != "" {
			args = append(args, "command="+tc.command)
		}
		v.MustRun(t, args...)
		_, errOut, code := v.Run(t, "write", "-f", "runtimes/plugins/catalog/secret/"+tc.name+"/check")
		if code != 2 || !strings.Contains(errOut, "Code: 400") || !strings.Contains(folded(errOut), tc.says) {
			t.Errorf("check %s: exit %d, want a 400 saying %q\n%s", tc.name, code, tc.says, errOut)
		}
	}
	testimage.AssertNoContainersOf(t, docker, v.ClusterID)
	if roots, _ := filepath.Glob(filepath.Join(v.TempDir, "rc-*")); len(roots) != 1 {
		t.Fatalf("the plugin's socket root is not where this test counts: %v", roots)
	}
	if after := socketDirs(); after != before {
		t.Errorf("socket directories: %d before the failed checks, %d after", before, after)
	}
}
