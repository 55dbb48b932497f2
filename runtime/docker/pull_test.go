package docker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

const testDigest = "sha256:" + "5b" + "810969c0ff7ffac1859ade439c43a802c57aa2f9ff4c8cc1a4dab4ba13e08a00"

func pullRunner(e *memEngine, digest string) *instance {
	p := testPlugin()
	p.Image, p.SHA256, p.PullPolicy, p.ImageDigest = "127.0.0.1:5000/kv", memImageID, runtime.PullMissing, digest
	c, err := With(e, "").Container(runtime.Spec{Plugin: p, Runtime: runtime.Runtime{OCIRuntime: "runc"}, Host: testHost(), Hardening: runtime.DefaultHardening()})
	if err != nil {
		panic(err)
	}
	return c.(*instance)
}

func TestPullIsPinnedAndVerified(t *testing.T) {
	ctx := context.Background()

	t.Run("present by ID: no pull", func(t *testing.T) {
		e := &memEngine{images: []image.Summary{{ID: memImageID}}}
		if err := pullRunner(e, testDigest).pullIfMissing(ctx); err != nil || len(e.pulledRef) != 0 {
			t.Fatalf("err %v, pulls %v", err, e.pulledRef)
		}
	})

	t.Run("by digest, with the registry's credentials", func(t *testing.T) {
		e := &memEngine{registry: map[string]string{"127.0.0.1:5000/kv@" + testDigest: memImageID}}
		r := pullRunner(e, testDigest)
		r.spec.Auth = func(registry string) *runtime.RegistryAuth {
			if registry != "127.0.0.1:5000" {
				t.Errorf("credentials asked for %q", registry)
			}
			return &runtime.RegistryAuth{Username: "u", Password: "p"}
		}
		if err := r.pullIfMissing(ctx); err != nil {
			t.Fatal(err)
		}
		if len(e.pulledRef) != 1 || e.pulledRef[0] != "127.0.0.1:5000/kv@"+testDigest {
			t.Fatalf("pulled %v", e.pulledRef)
		}
		decoded, _ := base64.URLEncoding.DecodeString(e.pulls[0].RegistryAuth)
		var auth map[string]string
		json.Unmarshal(decoded, &auth)
		if auth["username"] != "u" || auth["password"] != "p" || auth["serveraddress"] != "127.0.0.1:5000" {
			t.Fatalf("X-Registry-Auth %s", decoded)
		}
	})

	t.Run("without a digest, by tag, then checked", func(t *testing.T) {
		e := &memEngine{registry: map[string]string{"127.0.0.1:5000/kv:1.2.3": otherID}}
		err := pullRunner(e, "").pullIfMissing(ctx)
		want := "SHA256 mismatch: the image pulled as 127.0.0.1:5000/kv:1.2.3 is " + otherID + ", not the registered sha256 " + memImageID + "; it was removed again"
		if !errors.Is(err, runtime.ErrSHA256Mismatch) || err.Error() != want {
			t.Fatalf("err = %v\nwant %s", err, want)
		}
		if len(e.untagged) != 1 || e.untagged[0] != "127.0.0.1:5000/kv:1.2.3" {
			t.Fatalf("removed %v", e.untagged)
		}
	})

	t.Run("refused by the registry", func(t *testing.T) {
		e := &memEngine{pullErr: "unauthorized: authentication required"}
		err := pullRunner(e, "").pullIfMissing(ctx)
		want := "pulling the image failed: the registry 127.0.0.1:5000 refused 127.0.0.1:5000/kv:1.2.3: unauthorized: authentication required"
		if !errors.Is(err, runtime.ErrPullFailed) || err.Error() != want {
			t.Fatalf("err = %v\nwant %s", err, want)
		}
		e = &memEngine{registry: map[string]string{}}
		err = pullRunner(e, "").pullIfMissing(ctx)
		if !errors.Is(err, runtime.ErrPullFailed) || !strings.HasSuffix(err.Error(), "manifest for 127.0.0.1:5000/kv:1.2.3 not found: manifest unknown") {
			t.Fatalf("missing tag: %v", err)
		}
	})

	t.Run("bounded", func(t *testing.T) {
		e := &memEngine{pullHangs: true}
		r := pullRunner(e, testDigest)
		r.spec.PullTimeout = 50 * time.Millisecond
		err := r.pullIfMissing(ctx)
		if !errors.Is(err, runtime.ErrPullTimeout) || !strings.Contains(err.Error(), "did not finish within 50ms") {
			t.Fatalf("err = %v", err)
		}
	})
}
