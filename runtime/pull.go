package runtime

import (
	"errors"
	"time"

	"github.com/distribution/reference"
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
