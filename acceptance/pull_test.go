package acceptance

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/testimage"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/testregistry"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
)

// An image that is only in a registry (with basic auth) is pulled by its
// digest at check, verified by its ID, and run; a pull that brings another
// image ID is refused and undone; the registry's refusals are reported in
// its words.
func TestImagesPulledFromARegistry(t *testing.T) {
	vaulttest.EachServer(t, testImagesPulledFromARegistry)
}

func testImagesPulledFromARegistry(t *testing.T, k vaulttest.Kind) {
	docker := testimage.Docker(t)
	reg := testregistry.Start(t)
	local := fmt.Sprintf("rc-pull-test:%d", time.Now().UnixNano())
	id := testimage.BuildUniqueKV(t, docker, local)
	digest := reg.Push(t, docker, local, "kv-plugin", testimage.KVTag)
	// Only the registry has it now.
	testimage.RemoveImage(docker, id)
	ctx := context.Background()
	if _, err := docker.ImageInspect(ctx, id); err == nil {
		t.Fatal("the image is still local")
	}
	image := reg.Addr + "/kv-plugin"

	v := k.StartDev(t, "runtimes")
	v.MustRun(t, "write", "runtimes/registries/"+reg.Addr, "username="+reg.Username, "password="+reg.Password)
	var creds readResult
	v.MustJSON(t, &creds, "read", "runtimes/registries/"+reg.Addr)
	if creds.Data["password_set"] != true || strings.Contains(v.MustRun(t, "read", "-format=json", "runtimes/registries/"+reg.Addr), reg.Password) {
		t.Fatalf("a read of the credentials: %v", creds.Data)
	}
	v.MustRun(t, "write", "runtimes/catalog/container/pulled", "oci_runtime=runsc", "memory_bytes=134217728")
	v.MustRun(t, "write", "runtimes/plugins/catalog/secret/kv", "oci_image="+image, "version="+testimage.KVVersion,
		"sha256="+id, "image_digest="+digest, "pull_policy=missing", "runtime=pulled")

	var check readResult
	v.MustJSON(t, &check, "write", "-f", "runtimes/plugins/catalog/secret/kv/check")
	if check.Data["pulled"] != true || check.Data["pull_ms"].(float64) <= 0 || check.Data["container_id"] == "" {
		t.Fatalf("check that pulls: %v", check.Data)
	}
	t.Logf("pulled %s@%s in %.0f ms, then checked in %.0f ms", image, digest, check.Data["pull_ms"], check.Data["total_ms"])
	pulled, err := docker.ImageInspect(ctx, id)
	if err != nil || len(pulled.RepoDigests) == 0 || pulled.RepoDigests[0] != image+"@"+digest {
		t.Fatalf("the pulled image: %v %v", err, pulled.RepoDigests)
	}
	// Now it is there: no second pull.
	v.MustJSON(t, &check, "write", "-f", "runtimes/plugins/catalog/secret/kv/check")
	if check.Data["pulled"] != false {
		t.Fatalf("a second check pulled again: %v", check.Data)
	}
	testimage.RemoveImage(docker, id)

	checkFails := func(plugin string, want ...string) {
		t.Helper()
		_, errOut, code := v.Run(t, "write", "-f", "runtimes/plugins/catalog/secret/"+plugin+"/check")
		text := folded(errOut)
		for _, w := range want {
			if code != 2 || !strings.Contains(text, w) {
				t.Fatalf("check of %s: exit %d, want %q in\n%s", plugin, code, w, errOut)
			}
		}
	}
	// A pull by tag that brings another image than the registered ID: refused,
	// with both IDs, and the pulled image removed again.
	wrongID := "sha256:" + strings.Repeat("0", 63) + "1"
	v.MustRun(t, "write", "runtimes/plugins/catalog/secret/wrong-id", "oci_image="+image, "version="+testimage.KVVersion,
		"sha256="+wrongID, "pull_policy=missing", "runtime=pulled")
	checkFails("wrong-id", "Code: 400", "SHA256 mismatch: the image pulled as "+image+":"+testimage.KVTag+" is "+id+
		", not the registered sha256 "+wrongID+"; it was removed again")
	if _, err := docker.ImageInspect(ctx, id); err == nil {
		t.Fatal("the image pulled with the wrong ID is still there")
	}
	if _, err := docker.ImageInspect(ctx, image+":"+testimage.KVTag); err == nil {
		t.Fatal("the wrong image's name is still there")
	}

	// A tag the registry does not have.
	v.MustRun(t, "write", "runtimes/plugins/catalog/secret/no-tag", "oci_image="+image, "version=v9.9.9",
		"sha256="+id, "pull_policy=missing", "runtime=pulled")
	checkFails("no-tag", "Code: 400", "pulling the image failed: the registry "+reg.Addr+" refused "+image+":9.9.9:", "manifest unknown")

	// Wrong credentials: the registry's 401, in its words. (By tag: a digest
	// the engine has seen before is served from its cache without asking.)
	v.MustRun(t, "write", "runtimes/registries/"+reg.Addr, "username="+reg.Username, "password=wrong")
	v.MustRun(t, "write", "runtimes/plugins/catalog/secret/kv", "oci_image="+image, "version="+testimage.KVVersion,
		"sha256="+id, "pull_policy=missing", "runtime=pulled")
	checkFails("kv", "Code: 400", "pulling the image failed: the registry "+reg.Addr+" refused "+image+":"+testimage.KVTag+":", "unauthorized")
	testimage.AssertNoContainersOf(t, docker, v.ClusterID)
}
