package runtime

import (
	"context"
	"fmt"
	"strings"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
)

// checkImage makes sure the image is local, and when a sha256 is given that
// the named image has exactly that ID. Images are pulled only under
// PullMissing (pullIfMissing).
func (r *Runner) checkImage(ctx context.Context) error {
	if r.plugin.PullPolicy == PullMissing {
		return r.pullIfMissing(ctx)
	}
	ref := r.plugin.TaggedImage()
	// The engine lists images by their familiar names: a fully qualified
	// docker.io/library/kv-plugin is listed as kv-plugin.
	if named, err := reference.ParseNormalizedNamed(ref); err == nil {
		ref = reference.FamiliarString(named)
	}
	images, err := r.engine.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("reference", ref))})
	if err != nil {
		return fmt.Errorf("listing images named %s: %w", ref, err)
	}
	if len(images) == 0 {
		return fmt.Errorf("%w: no image %s on the engine at %s (its pull_policy is never: build or load it there, or register a pull_policy of missing)", ErrImageMissing, ref, EngineAddress(r.EngineAddress))
	}
	if r.plugin.SHA256 == "" {
		return nil
	}
	want := "sha256:" + strings.TrimPrefix(r.plugin.SHA256, "sha256:")
	var found []string
	for _, img := range images {
		if img.ID == want {
			return nil
		}
		found = append(found, img.ID)
	}
	return fmt.Errorf("%w: image %s is %s, not the registered sha256 %s", ErrSHA256Mismatch, ref, strings.Join(found, ", "), want)
}

// checkOCIRuntime refuses to start a container on an engine that would run
// it under another OCI runtime than it asks for: a Podman service runs every
// container under its own default, silently. (The Docker Engine refuses an
// unknown runtime at create, which explainCreateError explains.)
func (r *Runner) checkOCIRuntime(ctx context.Context) error {
	// Only a Podman service needs asking: every start pays for the question,
	// and the Docker Engine's own answer comes with its refusal.
	r.podman = isPodman(ctx, r.engine)
	if !r.podman {
		return nil
	}
	facts, err := AskEngine(ctx, r.engine, r.EngineAddress)
	if err != nil {
		return err
	}
	if !facts.Runs(r.run.HostConfig.Runtime) {
		return fmt.Errorf("%w: %s", ErrUnknownOCIRuntime, facts.Refusal(r.run.HostConfig.Runtime))
	}
	return nil
}
