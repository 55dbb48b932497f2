package acceptance

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/testimage"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// containersOf are the running containers the cluster's plugins started.
func containersOf(t *testing.T, docker *client.Client, clusterID string) []string {
	t.Helper()
	list, err := docker.ContainerList(context.Background(), container.ListOptions{
		All: true, Filters: filters.NewArgs(filters.Arg("label", runtime.LabelClusterID+"="+clusterID)),
	})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range list {
		ids = append(ids, c.ID[:12]+" "+c.State)
	}
	return ids
}

// unseal unseals a persistent server started in dir with its key.
func unseal(t *testing.T, v *vaulttest.Server, dir string) {
	t.Helper()
	var keys struct {
		UnsealKeys []string `json:"unseal_keys_b64"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "init.json"))
	if err == nil {
		err = json.Unmarshal(data, &keys)
	}
	if err != nil || len(keys.UnsealKeys) == 0 {
		t.Fatalf("the unseal key: %v", err)
	}
	v.MustRun(t, "operator", "unseal", keys.UnsealKeys[0])
}

// sealableWithProbe starts a server that can be sealed and unsealed (in
// dir, with its key), with the probe's runtime; register registers the
// probe under a name, with more arguments.
func sealableWithProbe(t *testing.T, k vaulttest.Kind) (*client.Client, *vaulttest.Server, string, func(name string, more ...string)) {
	t.Helper()
	docker := testimage.Docker(t)
	probeID := testimage.BuildProbe(t, docker)
	dir := vaulttest.ShortTempDir(t)
	v := k.StartPersistent(t, dir, vaulttest.FreePort(t), "runtimes")
	v.MustRun(t, "write", "runtimes/catalog/container/secret-rt", "oci_runtime=runc")
	return docker, v, dir, func(name string, more ...string) {
		v.MustRun(t, append([]string{"write", "runtimes/plugins/catalog/secret/" + name, "oci_image=" + testimage.ProbeName,
			"version=" + testimage.ProbeVersion, "sha256=" + probeID, "runtime=secret-rt"}, more...)...)
	}
}

// awaitContainer waits until a container of v's cluster is there: a start
// that has reached its engine.
func awaitContainer(t *testing.T, docker *client.Client, v *vaulttest.Server) {
	t.Helper()
	eventually(t, "a plugin's container", func() error {
		if len(containersOf(t, docker, v.ClusterID)) == 0 {
			return fmt.Errorf("no container yet")
		}
		return nil
	})
}

// stopLeavingNothing checks that no container of sealed v is left, stops
// v, and checks again.
func stopLeavingNothing(t *testing.T, docker *client.Client, v *vaulttest.Server) {
	t.Helper()
	eventually(t, "no hosted container while sealed", func() error {
		if left := containersOf(t, docker, v.ClusterID); len(left) > 0 {
			return fmt.Errorf("running while sealed: %v", left)
		}
		return nil
	})
	v.Stop(t)
	testimage.AssertNoContainersOf(t, docker, v.ClusterID)
}

// Unsealing starts every hosted mount in the background; a seal while one
// of those starts waits for a handshake that does not come abandons it at
// once: the seal does not wait for the start (which would end at the 30 s
// handshake limit), and no container is left.
func TestASealAbandonsStartsInProgress(t *testing.T) {
	vaulttest.EachServer(t, testASealAbandonsStartsInProgress)
}

func testASealAbandonsStartsInProgress(t *testing.T, k vaulttest.Kind) {
	docker, v, dir, register := sealableWithProbe(t, k)
	register("probe")
	hostProbe(t, v)
	// From its next start on, the plugin never completes its handshake.
	register("probe", "env=PROBE_HANDSHAKE_DELAY=1h")
	v.MustRun(t, "operator", "seal")
	unseal(t, v, dir)
	awaitContainer(t, docker, v)
	began := time.Now()
	v.MustRun(t, "operator", "seal")
	took := time.Since(began)
	t.Logf("sealed %s after it was asked, while a hosted plugin was starting", took.Round(time.Millisecond))
	if took >= 25*time.Second {
		t.Fatalf("the seal took %s: it waited for the start to fail at its 30 s handshake limit", took)
	}
	stopLeavingNothing(t, docker, v)
}

// The hostile run's case: a create of a plugin slow to handshake, then a
// seal. The create waits for the start 10 s at most, then stores the mount
// and says its plugin is still starting; the seal, which Vault makes wait
// for the create, then abandons the start: it does not wait for the 30 s
// handshake limit, and leaves no container.
func TestASealDuringACreateOfASlowPlugin(t *testing.T) {
	vaulttest.EachServer(t, testASealDuringACreateOfASlowPlugin)
}

func testASealDuringACreateOfASlowPlugin(t *testing.T, k vaulttest.Kind) {
	docker, v, _, register := sealableWithProbe(t, k)
	register("slow", "env=PROBE_HANDSHAKE_DELAY=1h")
	type answer struct {
		out, errOut string
		code        int
	}
	created := make(chan answer, 1)
	began := time.Now()
	go func() {
		out, errOut, code := v.Run(t, "write", "runtimes/hosted/slow", "plugin=slow")
		created <- answer{out, errOut, code}
	}()
	awaitContainer(t, docker, v)
	v.MustRun(t, "operator", "seal")
	took := time.Since(began)
	a := <-created
	t.Logf("create, then seal: sealed %s after the create began; the create answered exit %d\n%s%s", took.Round(time.Millisecond), a.code, a.out, a.errOut)
	if a.code != 0 || !strings.Contains(folded(a.out+a.errOut), "its plugin is still starting") {
		t.Fatalf("the create of a plugin slow to start: exit %d\n%s%s", a.code, a.out, a.errOut)
	}
	if took >= 25*time.Second {
		t.Fatalf("the seal came %s after the create began: it waited for the 30 s handshake limit", took)
	}
	stopLeavingNothing(t, docker, v)
}

// Sealing Vault stops every hosted container; after the unseal every hosted
// mount serves its data again.
func TestSealStopsHostedMountsAndUnsealServesThem(t *testing.T) {
	vaulttest.EachServer(t, testSealStopsHostedMountsAndUnsealServesThem)
}

func testSealStopsHostedMountsAndUnsealServesThem(t *testing.T, k vaulttest.Kind) {
	docker := testimage.Docker(t)
	kvID := testimage.BuildKV(t, docker)
	dir := vaulttest.ShortTempDir(t)
	v := k.StartPersistent(t, dir, vaulttest.FreePort(t), "runtimes")
	hostKV(t, v, kvID, "runc", "kv1", "kv2")
	v.MustRun(t, "write", "runtimes/mounts/kv1/a", "v=1")
	eventually(t, "kv2 write", func() error { return writeJSON(t, v, "write", "runtimes/mounts/kv2/data/s", `{"data":{"v":"two"}}`) })

	v.MustRun(t, "operator", "seal")
	eventually(t, "no hosted container while sealed", func() error {
		if left := containersOf(t, docker, v.ClusterID); len(left) > 0 {
			return fmt.Errorf("running while sealed: %v", left)
		}
		return nil
	})
	if _, errOut, code := v.Run(t, "read", "runtimes/mounts/kv1/a"); code != 2 || !strings.Contains(errOut, "Vault is sealed") {
		t.Fatalf("a read while sealed: exit %d %s", code, errOut)
	}

	unseal(t, v, dir)
	var read readResult
	eventually(t, "kv1 after the unseal", func() error {
		_, errOut, code := v.Run(t, "read", "-format=json", "runtimes/mounts/kv1/a")
		if code != 0 {
			return fmt.Errorf("exit %d %s", code, errOut)
		}
		return nil
	})
	v.MustJSON(t, &read, "read", "runtimes/mounts/kv1/a")
	if read.Data["v"] != "1" {
		t.Fatalf("kv1 after the unseal: %v", read.Data)
	}
	var versioned struct {
		Data struct {
			Data map[string]interface{} `json:"data"`
		} `json:"data"`
	}
	v.MustJSON(t, &versioned, "read", "runtimes/mounts/kv2/data/s")
	if versioned.Data.Data["v"] != "two" {
		t.Fatalf("kv2 after the unseal: %v", versioned.Data)
	}
	// kv is multiplexed: both mounts are served by one container.
	kv1, kv2 := waitForState(t, v, "kv1", "running"), waitForState(t, v, "kv2", "running")
	if kv1.Data.ContainerID == "" || kv1.Data.ContainerID != kv2.Data.ContainerID {
		t.Fatalf("after the unseal: kv1 %+v, kv2 %+v", kv1.Data, kv2.Data)
	}
	if running := containersOf(t, docker, v.ClusterID); len(running) != 1 || !strings.HasPrefix(kv1.Data.ContainerID, strings.Fields(running[0])[0]) {
		t.Fatalf("containers after the unseal: %v (the mounts' %s)", running, kv1.Data.ContainerID)
	}
	v.Stop(t)
	testimage.AssertNoContainersOf(t, docker, v.ClusterID)
}
