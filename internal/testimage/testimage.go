// Package testimage builds plugin images on the real Docker Engine for tests:
// this project's own plugin, built statically, in an image FROM scratch.
// Nothing is pulled (no registry is reachable); the image is built through
// the Engine API's classic builder.
package testimage

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

const (
	// Name and Tag of the test image; Version is the plugin version whose
	// tag is Tag.
	Name    = "vault-plugin-runtime-catalog-test"
	Tag     = "0.1.0"
	Version = "v0.1.0"

	dockerfile = "FROM scratch\nCOPY " + vaulttest.PluginName + " /plugin\nENTRYPOINT [\"/plugin\"]\n"
)

// Docker returns a client for the real engine, failing under CI=true and
// skipping otherwise when none answers.
func Docker(t testing.TB) *client.Client {
	t.Helper()
	vaulttest.RequireAcceptance(t)
	docker, err := runtime.NewDockerClient()
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
	imageID string // set once a build succeeded
)

// Build builds the test image once per process and returns its ID. A failed
// build is not remembered: every caller tries again and reports its own
// failure, so none goes on with an empty ID.
func Build(t testing.TB, docker *client.Client) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if imageID != "" {
		return imageID
	}
	dir := vaulttest.ShortTempDir(t)
	binary := vaulttest.BuildPlugin(t, dir)
	id, err := buildImage(docker, binary)
	if err != nil {
		t.Fatalf("building the test image: %v", err)
	}
	imageID = id
	return imageID
}

func buildImage(docker *client.Client, binary string) (string, error) {
	data, err := os.ReadFile(binary)
	if err != nil {
		return "", err
	}
	var buildContext bytes.Buffer
	tw := tar.NewWriter(&buildContext)
	for _, f := range []struct {
		name string
		mode int64
		body []byte
	}{{"Dockerfile", 0o644, []byte(dockerfile)}, {filepath.Base(binary), 0o755, data}} {
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
		Tags: []string{Name + ":" + Tag}, Remove: true, ForceRemove: true, Version: types.BuilderV1,
	})
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if err := jsonmessage.DisplayJSONMessagesStream(resp.Body, &bytes.Buffer{}, 0, false, nil); err != nil {
		return "", err
	}
	inspect, err := docker.ImageInspect(ctx, Name+":"+Tag)
	if err != nil {
		return "", err
	}
	return inspect.ID, nil
}

// Plugin is the test image as a registered plugin, pinned to its image ID.
func Plugin(id string) runtime.Plugin {
	return runtime.Plugin{Name: "rc-test", Type: "secret", Version: Version, Image: Name, SHA256: id}
}

// AssertNoContainers fails the test if any container of this project's is
// left on the engine.
func AssertNoContainers(t testing.TB, docker *client.Client) {
	t.Helper()
	list, err := docker.ContainerList(context.Background(), container.ListOptions{
		All: true, Filters: filters.NewArgs(filters.Arg("label", runtime.LabelManagedBy)),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		t.Errorf("container %s (%s, %s) was left behind", c.ID[:12], c.Image, c.State)
	}
}
