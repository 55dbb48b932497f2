package acceptance

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/testimage"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

func folded(s string) string { return strings.Join(strings.Fields(s), " ") }

func waitForState(t *testing.T, v *vaulttest.Server, mount, want string) mountState {
	t.Helper()
	var st mountState
	eventually(t, mount+" to be "+want, func() error {
		v.MustJSON(t, &st, "read", "runtimes/hosted/"+mount)
		if st.Data.State != want {
			return fmt.Errorf("state %s (%s)", st.Data.State, st.Data.Reason)
		}
		return nil
	})
	return st
}

// access is a vault command and whether a token may run it.
type access struct {
	args    []string
	allowed bool
}

// tokenWithPolicy writes a policy and makes a token with it alone.
func tokenWithPolicy(t *testing.T, v *vaulttest.Server, name, policy string) string {
	t.Helper()
	if _, errOut, code := v.RunInput(t, v.Token, strings.NewReader(policy), "policy", "write", name, "-"); code != 0 {
		t.Fatal(errOut)
	}
	return strings.TrimSpace(v.MustRun(t, "token", "create", "-field=token", "-policy="+name))
}

// assertAccess runs each command with token: allowed ones succeed, the
// others are refused with a 403.
func assertAccess(t *testing.T, v *vaulttest.Server, token string, cases []access) {
	t.Helper()
	for _, tc := range cases {
		_, errOut, code := v.RunAs(t, token, tc.args...)
		if tc.allowed && code != 0 {
			t.Errorf("vault %v: exit %d\n%s", tc.args, code, errOut)
		}
		if !tc.allowed && (code != 2 || !strings.Contains(errOut, "Code: 403")) {
			t.Errorf("vault %v: exit %d, want 403\n%s", tc.args, code, errOut)
		}
	}
}

// A hosted plugin's own root path needs sudo under mounts/NAME/, once Vault
// has read it (pending until the reload); its other paths do not; every
// mount's settings do; and it cannot see outside its storage.
func TestHostedPluginSudoAndIsolation(t *testing.T) {
	vaulttest.EachServer(t, testHostedPluginSudoAndIsolation)
}

func testHostedPluginSudoAndIsolation(t *testing.T, k vaulttest.Kind) {
	docker, v := startWithProbe(t, k)

	out, errOut, code := v.Run(t, "write", "runtimes/hosted/p", "plugin=probe")
	if code != 0 || !strings.Contains(folded(out+errOut), "vault write sys/plugins/reload/backend mounts=runtimes/") {
		t.Fatalf("create: exit %d\n%s%s", code, out, errOut)
	}
	waitForState(t, v, "p", "pending_reload")
	_, errOut, code = v.Run(t, "read", "runtimes/mounts/p/open")
	if code != 2 || !strings.Contains(errOut, "Code: 503") || !strings.Contains(folded(errOut), "run `vault write sys/plugins/reload/backend mounts=runtimes/`") {
		t.Fatalf("a pending mount served: exit %d\n%s", code, errOut)
	}

	v.MustRun(t, "write", "sys/plugins/reload/backend", "mounts=runtimes/")
	waitForState(t, v, "p", "running")

	policy := `
path "runtimes/mounts/*" { capabilities = ["create", "read", "update", "delete", "list"] }
path "runtimes/hosted"   { capabilities = ["read", "list"] }
`
	assertAccess(t, v, tokenWithPolicy(t, v, "hosted-no-sudo", policy), []access{
		{[]string{"read", "runtimes/mounts/p/open"}, true},
		{[]string{"read", "runtimes/mounts/p/admin"}, false}, // the plugin's root path
		{[]string{"read", "runtimes/hosted/p"}, false},       // the mount's settings
		{[]string{"list", "runtimes/hosted"}, false},         // the mounts
		{[]string{"write", "runtimes/hosted/new", "plugin=probe"}, false},
		{[]string{"delete", "runtimes/hosted/p"}, false},
	})
	var read readResult
	v.MustJSON(t, &read, "read", "runtimes/mounts/p/admin")
	if read.Data["admin"] != true {
		t.Fatalf("with sudo, admin: %#v", read.Data)
	}

	// The catalog holds runtime/container/secret-rt; the plugin's storage
	// is a view of its own and sees none of it.
	v.MustJSON(t, &read, "read", "runtimes/mounts/p/escape")
	if listed, _ := read.Data["listed"].([]interface{}); len(listed) != 0 {
		t.Errorf("the hosted plugin listed keys outside its view: %v", listed)
	}
	if found, _ := read.Data["found"].(map[string]interface{}); len(found) != 0 {
		t.Errorf("the hosted plugin read keys outside its view: %v", found)
	}
	t.Logf("refused by the storage view: %v", read.Data["refused"])

	// A plugin in use by a mount cannot be deleted.
	_, errOut, code = v.Run(t, "delete", "runtimes/plugins/catalog/secret/probe")
	if code != 2 || !strings.Contains(folded(errOut), "unable to delete plugin secret/probe. Hosted mounts=[p] are using it.") {
		t.Fatalf("deleting a hosted plugin: exit %d\n%s", code, errOut)
	}
	v.MustRun(t, "delete", "runtimes/hosted/p")
	v.MustRun(t, "delete", "runtimes/plugins/catalog/secret/probe")
	v.Stop(t)
	testimage.AssertNoContainersOf(t, docker, v.ClusterID)
}

// kv v1 with leased_passthrough issues leases that Vault renews and revokes
// through the host; a mount with leases out is not deleted without force.
func TestHostedKVLeases(t *testing.T) { vaulttest.EachServer(t, testHostedKVLeases) }

func testHostedKVLeases(t *testing.T, k vaulttest.Kind) {
	docker := testimage.Docker(t)
	kvID := testimage.BuildKV(t, docker)
	v := k.StartDev(t, "runtimes")
	hostKV(t, v, kvID, "runc")
	v.MustRun(t, "write", "runtimes/hosted/leased", "plugin=kv", "options=leased_passthrough=true")
	v.MustRun(t, "write", "runtimes/mounts/leased/db", "password=x", "ttl=1h")

	var secret struct {
		LeaseID       string `json:"lease_id"`
		LeaseDuration int    `json:"lease_duration"`
		Renewable     bool   `json:"renewable"`
	}
	v.MustJSON(t, &secret, "read", "runtimes/mounts/leased/db")
	if !strings.HasPrefix(secret.LeaseID, "runtimes/mounts/leased/db/") || !secret.Renewable || secret.LeaseDuration != 3600 {
		t.Fatalf("read with leased_passthrough: %+v", secret)
	}
	v.MustRun(t, "lease", "renew", secret.LeaseID)

	_, errOut, code := v.Run(t, "delete", "runtimes/hosted/leased")
	if code != 2 || !strings.Contains(folded(errOut), "hosted mount leased has 1 leases outstanding: revoke them first with `vault lease revoke -prefix runtimes/mounts/leased/`") {
		t.Fatalf("deleting a mount with a lease out: exit %d\n%s", code, errOut)
	}
	v.MustRun(t, "lease", "revoke", secret.LeaseID)
	v.MustRun(t, "delete", "runtimes/hosted/leased")

	// Without leased_passthrough a kv read registers no lease, as in Vault.
	v.MustRun(t, "write", "runtimes/hosted/plain", "plugin=kv")
	v.MustRun(t, "write", "runtimes/mounts/plain/db", "password=x", "ttl=1h")
	v.MustJSON(t, &secret, "read", "runtimes/mounts/plain/db")
	if secret.LeaseID != "" {
		t.Fatalf("a plain kv read registered lease %s", secret.LeaseID)
	}
	// Help for a hosted path is the hosted plugin's.
	if out := v.MustRun(t, "path-help", "runtimes/mounts/plain/db"); !strings.Contains(out, "Pass-through secret storage") {
		t.Fatalf("path-help of a hosted path:\n%s", out)
	}

	// The same kv registered under another name leases no more: the rule
	// is what the plugin returned, not what it is called.
	v.MustRun(t, "write", "runtimes/plugins/catalog/secret/kvh", "oci_image="+testimage.KVName,
		"version="+testimage.KVVersion, "sha256="+kvID, "runtime=runc")
	v.MustRun(t, "write", "runtimes/hosted/renamed", "plugin=kvh")
	v.MustRun(t, "write", "runtimes/mounts/renamed/db", "password=x", "ttl=1h")
	for i := 0; i < 3; i++ {
		v.MustJSON(t, &secret, "read", "runtimes/mounts/renamed/db")
		if secret.LeaseID != "" || secret.LeaseDuration != 0 {
			t.Fatalf("kv registered as kvh registered lease %+v", secret)
		}
	}

	// A hosted mount's data is governed by the token's ACL from the first
	// request, as a Vault mount's is: no sudo, no reload.
	policy := `path "runtimes/mounts/plain/*" { capabilities = ["create", "read", "update", "list"] }`
	assertAccess(t, v, tokenWithPolicy(t, v, "app", policy), []access{
		{[]string{"write", "runtimes/mounts/plain/app", "password=y"}, true},
		{[]string{"read", "runtimes/mounts/plain/app"}, true},
		{[]string{"list", "runtimes/mounts/plain/"}, true},
		{[]string{"read", "runtimes/mounts/renamed/db"}, false}, // another mount
		{[]string{"write", "runtimes/mounts/renamed/db", "password=z"}, false},
		{[]string{"read", "runtimes/hosted/plain"}, false}, // its settings
	})
	v.MustRun(t, "delete", "runtimes/hosted/plain")
	v.MustRun(t, "delete", "runtimes/hosted/renamed") // no force: no lease is out
	v.Stop(t)
	testimage.AssertNoContainersOf(t, docker, v.ClusterID)
}

// Hosted mounts keep their data across a restart of a file-backed Vault;
// when Vault stops no container is left; and after Vault and the plugin
// are killed with SIGKILL, the next start removes the containers they left.
func TestHostedMountsSurviveRestartAndKill(t *testing.T) {
	vaulttest.EachServer(t, testHostedMountsSurviveRestartAndKill)
}

func testHostedMountsSurviveRestartAndKill(t *testing.T, k vaulttest.Kind) {
	docker := testimage.Docker(t)
	kvID := testimage.BuildKV(t, docker)
	dir := vaulttest.ShortTempDir(t)
	port := vaulttest.FreePort(t)

	v := k.StartPersistent(t, dir, port, "runtimes")
	hostKV(t, v, kvID, "runc", "kv1", "kv2")
	for i := 0; i < 5; i++ {
		v.MustRun(t, "write", fmt.Sprintf("runtimes/mounts/kv1/s%d", i), fmt.Sprintf("value=%d", i))
	}
	eventually(t, "kv2 write", func() error { return writeJSON(t, v, "write", "runtimes/mounts/kv2/data/s", `{"data":{"v":"two"}}`) })
	v.Stop(t)
	testimage.AssertNoContainersOf(t, docker, v.ClusterID)

	v = k.StartPersistent(t, dir, port, "runtimes")
	assertHostedData := func() {
		t.Helper()
		for i := 0; i < 5; i++ {
			var read readResult
			v.MustJSON(t, &read, "read", fmt.Sprintf("runtimes/mounts/kv1/s%d", i))
			if read.Data["value"] != fmt.Sprint(i) {
				t.Fatalf("s%d after restart: %#v", i, read.Data)
			}
		}
		out := v.MustRun(t, "read", "-field=data", "runtimes/mounts/kv2/data/s")
		if !strings.Contains(out, "two") {
			t.Fatalf("kv2 after restart: %s", out)
		}
	}
	assertHostedData()
	st := waitForState(t, v, "kv1", "running")

	// SIGKILL: Vault and the plugin die; kv's container stays, an orphan.
	// Three more stand beside it: the one a dead owner of this cluster left
	// must go too, the one of a live owner and the one of another cluster
	// must stay.
	var status struct {
		ClusterID string `json:"cluster_id"`
	}
	v.MustJSON(t, &status, "status")
	v.Kill(t)
	pluginBinary := filepath.Join(dir, "plugins", vaulttest.PluginName)
	exec.Command("pkill", "-KILL", "-f", pluginBinary).Run()
	probeID := testimage.BuildProbe(t, docker)
	sleeper := func(cluster, owner string) string {
		out, err := exec.Command("docker", "run", "-d", "--network=none",
			"--label", runtime.LabelManagedBy+"=vault-plugin-runtime-catalog",
			"--label", runtime.LabelClusterID+"="+cluster, "--label", runtime.LabelOwner+"="+owner,
			probeID, "sleep").CombinedOutput()
		if err != nil {
			t.Fatalf("docker run: %v %s", err, out)
		}
		id := strings.TrimSpace(string(out))
		t.Cleanup(func() { exec.Command("docker", "rm", "-f", id).Run() })
		return id
	}
	if _, err := docker.ContainerInspect(context.Background(), st.Data.ContainerID); err != nil {
		t.Fatalf("the killed plugin's container is gone by itself (%v): nothing to reap", err)
	}
	orphan := sleeper(status.ClusterID, "999999999:1")
	live := sleeper(status.ClusterID, runtime.Owner())
	foreign := sleeper("another-cluster", "999999999:1")

	v = k.StartPersistent(t, dir, port, "runtimes")
	eventually(t, "the orphans' removal", func() error {
		for _, id := range []string{orphan, st.Data.ContainerID} {
			if _, err := docker.ContainerInspect(context.Background(), id); err == nil {
				return fmt.Errorf("container %s is still there", id[:12])
			}
		}
		return nil
	})
	for _, kept := range []string{live, foreign} {
		if _, err := docker.ContainerInspect(context.Background(), kept); err != nil {
			t.Fatalf("container %s was removed: %v", kept[:12], err)
		}
		exec.Command("docker", "rm", "-f", kept).Run()
	}
	assertHostedData()
	v.Stop(t)
	testimage.AssertNoContainersOf(t, docker, v.ClusterID)
}

// A plugin that cannot start is refused with the reason and nothing is
// stored; an edited registration applies at a reload, not before.
func TestHostedMountRefusalAndReload(t *testing.T) {
	vaulttest.EachServer(t, testHostedMountRefusalAndReload)
}

func testHostedMountRefusalAndReload(t *testing.T, k vaulttest.Kind) {
	docker := testimage.Docker(t)
	kvID := testimage.BuildKV(t, docker)
	v := k.StartDev(t, "runtimes")
	hostKV(t, v, kvID, "runc")
	v.MustRun(t, "write", "runtimes/catalog/container/broken", "oci_runtime=nope")
	v.MustRun(t, "write", "runtimes/plugins/catalog/secret/kv-broken", "oci_image="+testimage.KVName,
		"version="+testimage.KVVersion, "sha256="+kvID, "runtime=broken")

	_, errOut, code := v.Run(t, "write", "runtimes/hosted/bad", "plugin=kv-broken")
	if code != 2 || !strings.Contains(errOut, "Code: 400") || !strings.Contains(folded(errOut), `the Docker Engine has no OCI runtime "nope"`) {
		t.Fatalf("a mount that cannot start: exit %d\n%s", code, errOut)
	}
	if _, _, code := v.Run(t, "read", "runtimes/hosted/bad"); code != 2 {
		t.Fatal("a refused mount was stored")
	}
	_, errOut, code = v.Run(t, "write", "runtimes/hosted/bad", "plugin=nope")
	if code != 2 || !strings.Contains(errOut, `no secret plugin "nope" is registered`) {
		t.Fatalf("a missing plugin: exit %d\n%s", code, errOut)
	}

	v.MustRun(t, "write", "runtimes/hosted/kv", "plugin=kv")
	v.MustRun(t, "write", "runtimes/mounts/kv/a", "v=1")
	first := waitForState(t, v, "kv", "running")
	// A write that changes nothing it runs with leaves it serving; one
	// that changes its options restarts it, and says so.
	var rewritten readResult
	v.MustJSON(t, &rewritten, "write", "runtimes/hosted/kv", "description=the same kv")
	if st := waitForState(t, v, "kv", "running"); len(rewritten.Warnings) != 0 || st.Data.ContainerID != first.Data.ContainerID {
		t.Fatalf("a description's write: %v, %+v", rewritten.Warnings, st.Data)
	}
	v.MustJSON(t, &rewritten, "write", "runtimes/hosted/kv", "options=leased_passthrough=true")
	if fmt.Sprint(rewritten.Warnings) != "[hosted mount kv was running and restarted with its new settings (option leased_passthrough set to true); its data is kept]" {
		t.Fatalf("a write over a running mount: %v", rewritten.Warnings)
	}
	before := waitForState(t, v, "kv", "running")
	if before.Data.ContainerID == first.Data.ContainerID {
		t.Fatal("a mount with new options was not restarted")
	}
	// The runtime changes: the running mount keeps its container until a
	// reload, and says it is outdated.
	v.MustRun(t, "patch", "runtimes/catalog/container/runc", "memory_bytes=201326592")
	var st mountState
	v.MustJSON(t, &st, "read", "runtimes/hosted/kv")
	if !st.Data.Outdated || st.Data.ContainerID != before.Data.ContainerID {
		t.Fatalf("after the runtime's edit: %+v", st.Data)
	}
	var reload readResult
	v.MustJSON(t, &reload, "write", "runtimes/plugins/reload", "plugin=kv")
	if fmt.Sprint(reload.Data["reloaded"]) != "[kv]" {
		t.Fatalf("reload: %#v", reload.Data)
	}
	v.MustJSON(t, &st, "read", "runtimes/hosted/kv")
	info, err := docker.ContainerInspect(context.Background(), st.Data.ContainerID)
	if st.Data.Outdated || st.Data.ContainerID == before.Data.ContainerID || err != nil || info.HostConfig.Memory != 201326592 {
		t.Fatalf("after the reload: %+v (%v)", st.Data, err)
	}
	var read readResult
	v.MustJSON(t, &read, "read", "runtimes/mounts/kv/a")
	if read.Data["v"] != "1" {
		t.Fatalf("data after the reload: %#v", read.Data)
	}
	var keys []string
	v.MustJSON(t, &keys, "list", "runtimes/hosted")
	if fmt.Sprint(keys) != "[kv]" {
		t.Fatalf("mounts = %v", keys)
	}

	// A plugin that keeps dying is not restarted in a loop: the reload
	// started it once; two kills are restarted, the third fails the mount.
	for i := 0; i < 3; i++ {
		v.MustJSON(t, &st, "read", "runtimes/hosted/kv")
		if out, err := runDocker("kill", st.Data.ContainerID); err != nil {
			t.Fatalf("docker kill: %v %s", err, out)
		}
		_, errOut, code := v.Run(t, "read", "runtimes/mounts/kv/a")
		if i < 2 && code != 0 {
			t.Fatalf("read after kill %d: exit %d %s", i+1, code, errOut)
		}
		if i == 2 && (code != 2 || !strings.Contains(folded(errOut), "hosted mount kv failed: its plugin crashed 3 times in a row (it did not start, or died within 10s of starting); last: plugin container exited with code 137")) {
			t.Fatalf("read after the third kill: exit %d %s", code, errOut)
		}
		// Under a memory limit, a docker kill is said to be one, as the
		// engine reported no OOM kill.
		if i == 2 && (!strings.Contains(folded(errOut), "SIGKILL from outside the container, a docker kill say: the engine reported no OOM kill") ||
			strings.Contains(errOut, "exceeds its memory limit")) {
			t.Fatalf("the third kill's reason: %s", errOut)
		}
	}
	v.MustJSON(t, &st, "read", "runtimes/hosted/kv")
	if st.Data.State != "failed" || st.Data.ContainerID != "" {
		t.Fatalf("after the third kill: %+v", st.Data)
	}
	v.MustRun(t, "write", "runtimes/plugins/reload", "mounts=kv")
	v.MustJSON(t, &read, "read", "runtimes/mounts/kv/a")
	if read.Data["v"] != "1" {
		t.Fatalf("data after the failed mount's reload: %#v", read.Data)
	}
	v.Stop(t)
	testimage.AssertNoContainersOf(t, docker, v.ClusterID)
}
