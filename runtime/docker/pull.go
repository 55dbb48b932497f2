package docker

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// pullIfMissing makes the registered image ID present: nothing to do when
// it is; else the pull, bounded by the pull timeout, and the check that
// what came is that image. What came and is not is removed again.
func (r *instance) pullIfMissing(ctx context.Context) error {
	want := "sha256:" + strings.TrimPrefix(r.spec.Plugin.SHA256, "sha256:")
	if _, err := r.api.ImageInspect(ctx, want); err == nil {
		return nil
	}
	ref, from := r.spec.Plugin.PullRef(), runtime.RegistryOf(r.spec.Plugin.Image)
	options := image.PullOptions{}
	if r.spec.Auth != nil {
		if auth := r.spec.Auth(from); auth != nil {
			encoded, err := registry.EncodeAuthConfig(registry.AuthConfig{
				Username: auth.Username, Password: auth.Password, ServerAddress: from,
			})
			if err != nil {
				return err
			}
			options.RegistryAuth = encoded
		}
	}
	timeout := r.spec.PullTimeout
	if timeout == 0 {
		timeout = runtime.DefaultPullTimeout
	}
	pullCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	began := time.Now()
	progress, err := r.api.ImagePull(pullCtx, ref, options)
	if err == nil {
		// The engine reports a refusal inside the stream as often as before it.
		err = jsonmessage.DisplayJSONMessagesStream(progress, io.Discard, 0, false, nil)
		progress.Close()
	}
	r.state.Pulled = time.Since(began)
	if err != nil {
		if pullCtx.Err() != nil {
			return fmt.Errorf("%w: pulling %s did not finish within %s (the engine may go on with it; a later start uses it once there)",
				runtime.ErrPullTimeout, ref, timeout)
		}
		return fmt.Errorf("%w: the registry %s refused %s: %s", runtime.ErrPullFailed, from, ref, registryWords(err))
	}
	pulled, err := r.api.ImageInspect(ctx, ref)
	if err != nil {
		return fmt.Errorf("inspecting the pulled image %s: %w", ref, err)
	}
	if pulled.ID != want {
		// Untag what came (the image goes with its last reference), so the
		// wrong image is not left for another start to find.
		if _, rmErr := r.api.ImageRemove(ctx, ref, image.RemoveOptions{PruneChildren: true}); rmErr != nil {
			r.spec.Logger.Warn("removing an image pulled with the wrong ID", "image", ref, "error", rmErr)
		}
		return fmt.Errorf("%w: the image pulled as %s is %s, not the registered sha256 %s; it was removed again",
			runtime.ErrSHA256Mismatch, ref, pulled.ID, want)
	}
	return nil
}

// registryWords is the registry's own reason in an engine's pull error,
// without the engine's preamble.
func registryWords(err error) string {
	return strings.TrimPrefix(err.Error(), "Error response from daemon: ")
}
