package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/pkg/jsonmessage"
)

// Pull policies: whether a start may pull the plugin's image.
const (
	// PullNever never pulls: the image must be on the engine, as Vault has it.
	PullNever = "never"
	// PullMissing pulls the image when the engine does not have the
	// registered image ID, pinned by the manifest digest when one is
	// registered, and verified against the image ID (sha256) after.
	PullMissing = "missing"

	// DefaultPullTimeout bounds a pull.
	DefaultPullTimeout = 2 * time.Minute
)

// ErrPullFailed is a pull the registry refused (no such tag or digest,
// wrong credentials); ErrPullTimeout one that did not finish in time.
var (
	ErrPullFailed  = errors.New("pulling the image failed")
	ErrPullTimeout = errors.New("pulling the image timed out")
)

// RegistryAuth is what a private registry is logged in to with.
type RegistryAuth struct {
	Username, Password string
}

// PullRef is the reference a pull asks for: image@digest when a manifest
// digest is registered (the registry cannot answer with anything else),
// else image:tag.
func (p Plugin) PullRef() string {
	if p.ImageDigest != "" {
		return p.Image + "@" + p.ImageDigest
	}
	return p.TaggedImage()
}

// RegistryOf is the registry host (and port) an image is pulled from.
func RegistryOf(img string) string {
	named, err := reference.ParseNormalizedNamed(img)
	if err != nil {
		return ""
	}
	return reference.Domain(named)
}

// pullIfMissing makes the registered image ID present: nothing to do when
// it is; else the pull, bounded by the pull timeout, and the check that
// what came is that image. What came and is not is removed again.
func (r *Runner) pullIfMissing(ctx context.Context) error {
	want := "sha256:" + strings.TrimPrefix(r.plugin.SHA256, "sha256:")
	if _, err := r.engine.ImageInspect(ctx, want); err == nil {
		return nil
	}
	ref, from := r.plugin.PullRef(), RegistryOf(r.plugin.Image)
	options := image.PullOptions{}
	if r.Auth != nil {
		if auth := r.Auth(from); auth != nil {
			encoded, err := registry.EncodeAuthConfig(registry.AuthConfig{
				Username: auth.Username, Password: auth.Password, ServerAddress: from,
			})
			if err != nil {
				return err
			}
			options.RegistryAuth = encoded
		}
	}
	timeout := r.PullTimeout
	if timeout == 0 {
		timeout = DefaultPullTimeout
	}
	pullCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	began := time.Now()
	progress, err := r.engine.ImagePull(pullCtx, ref, options)
	if err == nil {
		// The engine reports a refusal inside the stream as often as before it.
		err = jsonmessage.DisplayJSONMessagesStream(progress, io.Discard, 0, false, nil)
		progress.Close()
	}
	r.Pulled = time.Since(began)
	if err != nil {
		if pullCtx.Err() != nil {
			return fmt.Errorf("%w: pulling %s did not finish within %s (the engine may go on with it; a later start uses it once there)",
				ErrPullTimeout, ref, timeout)
		}
		return fmt.Errorf("%w: the registry %s refused %s: %s", ErrPullFailed, from, ref, registryWords(err))
	}
	pulled, err := r.engine.ImageInspect(ctx, ref)
	if err != nil {
		return fmt.Errorf("inspecting the pulled image %s: %w", ref, err)
	}
	if pulled.ID != want {
		// Untag what came (the image goes with its last reference), so the
		// wrong image is not left for another start to find.
		if _, rmErr := r.engine.ImageRemove(ctx, ref, image.RemoveOptions{PruneChildren: true}); rmErr != nil {
			r.logger.Warn("removing an image pulled with the wrong ID", "image", ref, "error", rmErr)
		}
		return fmt.Errorf("%w: the image pulled as %s is %s, not the registered sha256 %s; it was removed again",
			ErrSHA256Mismatch, ref, pulled.ID, want)
	}
	return nil
}

// registryWords is the registry's own reason in an engine's pull error,
// without the engine's preamble.
func registryWords(err error) string {
	return strings.TrimPrefix(err.Error(), "Error response from daemon: ")
}
