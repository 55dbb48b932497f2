package docker

import (
	"context"
	"fmt"
	"strings"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// checkImage makes sure the image is local, and when a sha256 is given that
// the named image has exactly that ID. Images are pulled only under
// runtime.PullMissing (pullIfMissing).
func (r *instance) checkImage(ctx context.Context) error {
	if r.spec.Plugin.PullPolicy == runtime.PullMissing {
		return r.pullIfMissing(ctx)
	}
	ref := r.spec.Plugin.TaggedImage()
	// The engine lists images by their familiar names: a fully qualified
	// docker.io/library/kv-plugin is listed as kv-plugin.
	if named, err := reference.ParseNormalizedNamed(ref); err == nil {
		ref = reference.FamiliarString(named)
	}
	images, err := r.api.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("reference", ref))})
	if err != nil {
		return fmt.Errorf("listing images named %s: %w", ref, err)
	}
	if len(images) == 0 {
		return fmt.Errorf("%w: no image %s on the engine at %s (its pull_policy is never: build or load it there, or register a pull_policy of missing)", runtime.ErrImageMissing, ref, r.engine.Address())
	}
	if r.spec.Plugin.SHA256 == "" {
		return nil
	}
	want := "sha256:" + strings.TrimPrefix(r.spec.Plugin.SHA256, "sha256:")
	var found []string
	for _, img := range images {
		if img.ID == want {
			return nil
		}
		found = append(found, img.ID)
	}
	return fmt.Errorf("%w: image %s is %s, not the registered sha256 %s", runtime.ErrSHA256Mismatch, ref, strings.Join(found, ", "), want)
}

// checkOCIRuntime refuses to start a container on an engine that would run
// it under another OCI runtime than it asks for: a Podman service runs every
// container under its own default, silently. (The Docker Engine refuses an
// unknown runtime at create, which explainCreateError explains.)
func (r *instance) checkOCIRuntime(ctx context.Context) error {
	// Only a Podman service needs asking: every start pays for the question,
	// and the Docker Engine's own answer comes with its refusal.
	r.podman = r.engine.isPodman(ctx)
	if !r.podman {
		return nil
	}
	facts, err := r.engine.Facts(ctx)
	if err != nil {
		return err
	}
	if !facts.Runs(r.run.HostConfig.Runtime) {
		return fmt.Errorf("%w: %s", runtime.ErrUnknownOCIRuntime, facts.Refusal(r.run.HostConfig.Runtime))
	}
	return nil
}
