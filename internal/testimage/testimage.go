// Package testimage builds plugin images on the real Docker Engine for tests:
// this project's own plugin, built statically, in an image FROM scratch.
// Nothing is pulled (no registry is reachable); the image is built through
// the Engine API's classic builder.
package testimage

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
	dockerengine "github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime/docker"
)

// Name is the test image's name, of this test binary's own: the packages'
// tests run at once (go test -p 2), and each one's build of the image would
// move the other's tag to an image of its own, whose sha256 the other did
// not register.
var Name = "vault-plugin-runtime-catalog-test-" + strings.TrimSuffix(filepath.Base(os.Args[0]), ".test")

const (
	// Tag of the test image; Version is the plugin version whose tag is
	// Tag.
	Tag     = "0.1.0"
	Version = "v0.1.0"

	// KVName, KVTag and KVVersion name the image of HashiCorp's kv plugin.
	KVName    = "kv-plugin"
	KVTag     = "0.25.0"
	KVVersion = "v0.25.0"

	// JWTName, JWTTag and JWTVersion name the image of HashiCorp's JWT
	// auth plugin.
	JWTName    = "jwt-auth-plugin"
	JWTTag     = "0.26.1"
	JWTVersion = "v0.26.1"
)

// dockerfile runs the binary from an image FROM scratch: nothing but it.
func dockerfile(binary string) string {
	return "FROM scratch\nCOPY " + binary + " /plugin\nENTRYPOINT [\"/plugin\"]\n"
}

// Docker returns a client for the real engine, failing under CI=true and
// skipping otherwise when none answers.
func Docker(t vaulttest.T) *client.Client {
	t.Helper()
	vaulttest.RequireAcceptance(t)
	docker, err := dockerengine.NewClient("")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := docker.Ping(ctx); err != nil {
		docker.Close()
		vaulttest.RequireReal(t, "a Docker Engine ("+err.Error()+")", "run `make test`, or start one with `sudo scripts/start-docker.sh`")
	}
	t.Cleanup(func() { docker.Close() })
	return docker
}

var (
	buildMu sync.Mutex
	built   = map[string]string{} // image:tag -> ID, once a build succeeded
)

// Build builds the test image (this project's own plugin) once per process
// and returns its ID. A failed build is not remembered: every caller tries
// again and reports its own failure, so none goes on with an empty ID.
func Build(t vaulttest.T, docker *client.Client) string {
	t.Helper()
	return buildOnce(t, docker, Name+":"+Tag, func() string { return vaulttest.BuildPlugin(t, vaulttest.ShortTempDir(t)) })
}

// BuildKV builds the image of HashiCorp's kv plugin once per process, from
// the binary $KV_PLUGIN_BINARY names (scripts/build-kv-plugin.sh builds it
// from the Go module proxy; make test sets it), and returns its ID.
func BuildKV(t vaulttest.T, docker *client.Client) string {
	t.Helper()
	binary := hashiCorpPlugin(t, "kv")
	return buildOnce(t, docker, KVName+":"+KVTag, func() string { return binary })
}

// BuildJWT builds the image of HashiCorp's JWT auth plugin once per
// process, from the binary $JWT_PLUGIN_BINARY names
// (scripts/build-hashicorp-plugin.sh jwt; make test sets it), and returns
// its ID.
func BuildJWT(t vaulttest.T, docker *client.Client) string {
	t.Helper()
	binary := hashiCorpPlugin(t, "jwt")
	return buildOnce(t, docker, JWTName+":"+JWTTag, func() string { return binary })
}

// hashiCorpPlugin is the binary of HashiCorp's plugin which ("kv", "jwt"),
// as built by scripts/build-hashicorp-plugin.sh and named by
// $KV_PLUGIN_BINARY or $JWT_PLUGIN_BINARY; without it the test fails under
// CI=true, else skips.
func hashiCorpPlugin(t vaulttest.T, which string) string {
	t.Helper()
	env := strings.ToUpper(which) + "_PLUGIN_BINARY"
	binary := os.Getenv(env)
	if binary == "" {
		vaulttest.RequireReal(t, "HashiCorp's "+which+" plugin ($"+env+")",
			"run `make test`, or export "+env+"=$(scripts/build-hashicorp-plugin.sh "+which+")")
	}
	return binary
}

// BuildUniqueKV builds HashiCorp's kv plugin into an image of its own,
// tagged ref, whose ID no other image has (a nonce file is added): a test
// may push, remove and pull it without touching the images other tests
// share. The image is removed when the test ends.
func BuildUniqueKV(t vaulttest.T, docker *client.Client, ref string) string {
	t.Helper()
	binary := hashiCorpPlugin(t, "kv")
	id, err := buildImage(docker, ref, binary, []byte(fmt.Sprintf("%s %d %d", ref, os.Getpid(), time.Now().UnixNano())))
	if err != nil {
		t.Fatalf("building the image %s: %v", ref, err)
	}
	t.Cleanup(func() { RemoveImage(docker, id) })
	return id
}

// RemoveImage removes an image and every name it has, if it is there.
func RemoveImage(docker *client.Client, id string) {
	docker.ImageRemove(context.Background(), id, image.RemoveOptions{Force: true, PruneChildren: true})
}

// Probe names the image of the hosting tests' probe plugin
// (internal/probeplugin).
const (
	ProbeName    = "rc-probe-plugin"
	ProbeTag     = "0.2.0"
	ProbeVersion = "v0.2.0"
)

// BuildProbe builds the probe plugin's image once per process.
func BuildProbe(t vaulttest.T, docker *client.Client) string {
	t.Helper()
	return BuildProbeNamed(t, docker, ProbeName)
}

// BuildProbeNamed builds the probe plugin's image once per process, as
// name:ProbeTag: a test package that runs beside another that builds the
// probe (go test -p 2) takes a name of its own, or each would move the
// other's tag to an image of its own build.
func BuildProbeNamed(t vaulttest.T, docker *client.Client, name string) string {
	t.Helper()
	return buildOnce(t, docker, name+":"+ProbeTag, func() string {
		return vaulttest.BuildCommand(t, "./internal/probeplugin", filepath.Join(vaulttest.ShortTempDir(t), "probe"))
	})
}

func buildOnce(t vaulttest.T, docker *client.Client, ref string, binary func() string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if id := built[ref]; id != "" {
		return id
	}
	id, err := buildImage(docker, ref, binary(), nil)
	if err != nil {
		t.Fatalf("building the image %s: %v", ref, err)
	}
	built[ref] = id
	return id
}

// buildImage builds binary into an image FROM scratch tagged ref; a nonce,
// when given, is added as a file, which makes the image's ID its own.
func buildImage(docker *client.Client, ref, binary string, nonce []byte) (string, error) {
	data, err := os.ReadFile(binary)
	if err != nil {
		return "", err
	}
	type file struct {
		name string
		mode int64
		body []byte
	}
	files := []file{{"Dockerfile", 0o644, []byte(dockerfile(filepath.Base(binary)))}, {filepath.Base(binary), 0o755, data}}
	if nonce != nil {
		files[0].body = append(files[0].body, "COPY nonce /nonce\n"...)
		files = append(files, file{"nonce", 0o644, nonce})
	}
	var buildContext bytes.Buffer
	tw := tar.NewWriter(&buildContext)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.body))}); err != nil {
			return "", err
		}
		if _, err := tw.Write(f.body); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	resp, err := docker.ImageBuild(ctx, &buildContext, types.ImageBuildOptions{
		Tags: []string{ref}, Remove: true, ForceRemove: true, Version: types.BuilderV1,
	})
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if err := jsonmessage.DisplayJSONMessagesStream(resp.Body, &bytes.Buffer{}, 0, false, nil); err != nil {
		return "", err
	}
	inspect, err := docker.ImageInspect(ctx, ref)
	if err != nil {
		return "", err
	}
	return inspect.ID, nil
}

// Plugin is the test image as a registered plugin, pinned to its image ID.
func Plugin(id string) runtime.Plugin {
	return runtime.Plugin{Name: "rc-test", Type: "secret", Version: Version, Image: Name, SHA256: id}
}

// AssertNoContainers fails the test if any container this test process
// started itself (through the runtime package) is left on the engine. Other
// test processes run beside it, with containers of their own.
func AssertNoContainers(t testing.TB, docker *client.Client) {
	t.Helper()
	assertNone(t, docker, runtime.LabelOwner+"="+runtime.Owner())
}

// AssertNoContainersOf fails the test if any container of the Vault cluster
// is left: the containers its plugins started.
func AssertNoContainersOf(t testing.TB, docker *client.Client, clusterID string) {
	t.Helper()
	if clusterID == "" {
		t.Fatal("no cluster ID to look for containers by")
	}
	assertNone(t, docker, runtime.LabelClusterID+"="+clusterID)
}

// ReapCluster removes, when the test ends (after every cleanup registered
// later, such as the cluster's), the containers of the cluster *clusterID
// names whose owner process is gone: those of a plugin a test had to kill.
func ReapCluster(t testing.TB, docker *client.Client, clusterID *string) {
	t.Cleanup(func() {
		if *clusterID == "" {
			return
		}
		removed, err := dockerengine.With(docker, "").ReapOrphans(context.Background(), *clusterID)
		if err != nil || len(removed) > 0 {
			t.Logf("removed %d containers of killed plugins (%v)", len(removed), err)
		}
	})
}

func assertNone(t testing.TB, docker *client.Client, label string) {
	t.Helper()
	if err := containersWith(docker, label); err != nil {
		t.Error(err)
	}
}

// ContainersLeft says which containers this test process started are still
// on the engine, if any: for a test that waits for a removal done in the
// background.
func ContainersLeft(docker *client.Client) error {
	return containersWith(docker, runtime.LabelOwner+"="+runtime.Owner())
}

func containersWith(docker *client.Client, label string) error {
	list, err := docker.ContainerList(context.Background(), container.ListOptions{
		All: true, Filters: filters.NewArgs(filters.Arg("label", runtime.LabelManagedBy), filters.Arg("label", label)),
	})
	if err != nil {
		return err
	}
	var left []string
	for _, c := range list {
		left = append(left, fmt.Sprintf("container %s (%s, %s) was left behind", c.ID[:12], c.Image, c.State))
	}
	if len(left) > 0 {
		return errors.New(strings.Join(left, "; "))
	}
	return nil
}
