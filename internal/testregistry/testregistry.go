// Package testregistry runs a real OCI registry for tests: Debian's
// docker-registry (distribution 2.8) on a free port of 127.0.0.1, storing
// in a temporary directory, with basic auth from an htpasswd file. The
// Docker Engine treats 127.0.0.0/8 registries as insecure on its own, so
// plain HTTP needs no change to the engine's configuration.
package testregistry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
	"golang.org/x/crypto/bcrypt"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
)

// Registry is a running registry.
type Registry struct {
	// Addr is host:port, as an image reference names the registry.
	Addr               string
	Username, Password string
}

// Start starts a registry that lets in Username with Password (generated),
// and stops it when the test ends.
func Start(t vaulttest.T) *Registry {
	t.Helper()
	vaulttest.RequireAcceptance(t)
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		vaulttest.RequireReal(t, "Debian's docker-registry", "run `make test` (scripts/start-podman.sh installs it), or apt-get install docker-registry")
	}
	dir := vaulttest.ShortTempDir(t)
	r := &Registry{Addr: fmt.Sprintf("127.0.0.1:%d", vaulttest.FreePort(t)), Username: "ci", Password: fmt.Sprintf("pw-%d", time.Now().UnixNano())}
	// The registry takes bcrypt hashes only.
	hash, err := bcrypt.GenerateFromPassword([]byte(r.Password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "htpasswd"), []byte(r.Username+":"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: %s}
  delete: {enabled: true}
http:
  addr: %s
  secret: %d
auth:
  htpasswd: {realm: rc-test, path: %s}
`, filepath.Join(dir, "data"), r.Addr, time.Now().UnixNano(), filepath.Join(dir, "htpasswd"))
	configPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", configPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logFile.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			log, _ := os.ReadFile(logFile.Name())
			t.Logf("registry log:\n%s", log)
		}
	})
	// Ready when it answers /v2/ (with 401: it wants credentials).
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + r.Addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				return r
			}
		}
		select {
		case <-done:
			log, _ := os.ReadFile(logFile.Name())
			t.Fatalf("docker-registry exited:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the registry at %s did not answer: %v", r.Addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Auth is the engine's registry auth for this registry with password.
func (r *Registry) Auth(password string) string {
	encoded, _ := registry.EncodeAuthConfig(registry.AuthConfig{Username: r.Username, Password: password, ServerAddress: r.Addr})
	return encoded
}

// Push pushes the local image localRef as Addr/repo:tag and returns the
// manifest digest the registry gave it. The pushed name is removed locally
// again (localRef is left alone).
func (r *Registry) Push(t vaulttest.T, docker *client.Client, localRef, repo, tag string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	remote := r.Addr + "/" + repo + ":" + tag
	if err := docker.ImageTag(ctx, localRef, remote); err != nil {
		t.Fatal(err)
	}
	defer docker.ImageRemove(context.Background(), remote, image.RemoveOptions{})
	progress, err := docker.ImagePush(ctx, remote, image.PushOptions{RegistryAuth: r.Auth(r.Password)})
	if err != nil {
		t.Fatalf("pushing %s: %v", remote, err)
	}
	defer progress.Close()
	var digest string
	err = jsonmessage.DisplayJSONMessagesStream(progress, io.Discard, 0, false, func(m jsonmessage.JSONMessage) {
		var aux struct{ Digest string }
		if m.Aux != nil && json.Unmarshal(*m.Aux, &aux) == nil && aux.Digest != "" {
			digest = aux.Digest
		}
	})
	if err != nil || digest == "" {
		t.Fatalf("pushing %s: %v (digest %q)", remote, err, digest)
	}
	return digest
}
