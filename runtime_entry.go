package runtimecatalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/hashicorp/vault/sdk/logical"
)

const (
	// runtimeTypeContainer is the only plugin runtime type Vault defines.
	runtimeTypeContainer = "container"

	// minMemoryBytes is the smallest memory limit Docker Engine accepts
	// ("Minimum memory limit allowed is 6MB"); anything below it would only
	// fail when a plugin starts.
	minMemoryBytes = 6 * 1024 * 1024

	maxOCIRuntimeLength     = 64
	maxCgroupParentLength   = 255
	runtimeStoragePrefix    = "runtime/"
	runtimeEntryFormat      = 1
	supportedRuntimeTypeMsg = "%q is not a supported plugin runtime type"
)

// runtimeEntry is one plugin runtime: how the containers of the plugins that
// reference it are run.
type runtimeEntry struct {
	Name         string `json:"name"`
	Type         string `json:"type"`
	OCIRuntime   string `json:"oci_runtime"` // "" means runtime.DefaultOCIRuntime, applied at start
	CgroupParent string `json:"cgroup_parent"`
	CPUNanos     int64  `json:"cpu_nanos"`
	MemoryBytes  int64  `json:"memory_bytes"`
	Rootless     bool   `json:"rootless"`
}

// storedRuntime is the storage format. Format is bumped when the layout
// changes, so an older plugin refuses an entry it cannot read rather than
// silently dropping fields.
type storedRuntime struct {
	Format int `json:"format"`
	runtimeEntry
}

// effectiveOCIRuntime is the OCI runtime containers really get; the
// runtime package, which starts them, owns the default.
func (r *runtimeEntry) effectiveOCIRuntime() string {
	return r.toRuntime().EffectiveOCIRuntime()
}

func (r *runtimeEntry) hasCgroupLimits() bool {
	return r.CPUNanos != 0 || r.MemoryBytes != 0 || r.CgroupParent != ""
}

// toResponseData is the runtime as Vault's catalog returns it.
func (r *runtimeEntry) toResponseData() map[string]interface{} {
	return map[string]interface{}{
		"name":          r.Name,
		"type":          r.Type,
		"oci_runtime":   r.effectiveOCIRuntime(),
		"cgroup_parent": r.CgroupParent,
		"cpu_nanos":     r.CPUNanos,
		"memory_bytes":  r.MemoryBytes,
		"rootless":      r.Rootless,
	}
}

// warnings are the settings that are accepted but will not do what an
// operator likely expects.
func (r *runtimeEntry) warnings() []string {
	if r.Rootless && r.hasCgroupLimits() {
		return []string{"cgroup limits (cgroup_parent, cpu_nanos, memory_bytes) are not supported " +
			"with rootless Docker and the runsc runtime; they may be ignored or make the plugin fail to start"}
	}
	return nil
}

var (
	ociRuntimeRegex = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	// A cgroup path: components of safe characters, separated by single
	// slashes, optionally absolute and optionally ending in a slash.
	cgroupPathRegex = regexp.MustCompile(`^/?[A-Za-z0-9_.:@-]+(/[A-Za-z0-9_.:@-]+)*/?$`)
	// A systemd slice: a unit name ending in ".slice", no slashes.
	systemdSliceRegex = regexp.MustCompile(`^[A-Za-z0-9_.:\\-]+\.slice$`)
)

// validateRuntimeType checks the type segment of a path or ?type= value.
func validateRuntimeType(t string) error {
	if t != runtimeTypeContainer {
		return fmt.Errorf(supportedRuntimeTypeMsg, t)
	}
	return nil
}

// validate checks every field; the first broken rule is returned.
func (r *runtimeEntry) validate() error {
	if err := validateRuntimeType(r.Type); err != nil {
		return err
	}
	if err := validateName("runtime", r.Name); err != nil {
		return err
	}
	if r.CPUNanos < 0 {
		return errors.New("runtime cpu in nanos cannot be negative")
	}
	if r.MemoryBytes < 0 {
		return errors.New("runtime memory in bytes cannot be negative")
	}
	if r.MemoryBytes != 0 && r.MemoryBytes < minMemoryBytes {
		return fmt.Errorf("memory_bytes %d is too small: use 0 for no limit or at least %d (6 MiB, Docker's minimum)",
			r.MemoryBytes, minMemoryBytes)
	}
	if r.OCIRuntime != "" && (len(r.OCIRuntime) > maxOCIRuntimeLength || !ociRuntimeRegex.MatchString(r.OCIRuntime)) {
		return fmt.Errorf("oci_runtime %q is not a plain runtime name: at most %d letters, digits, '_', '-' and '.', "+
			"starting with a letter or digit (the name the Docker Engine knows the runtime by, e.g. runsc or runc)",
			r.OCIRuntime, maxOCIRuntimeLength)
	}
	if r.CgroupParent != "" {
		if err := validateCgroupParent(r.CgroupParent); err != nil {
			return err
		}
	}
	return nil
}

func validateCgroupParent(p string) error {
	bad := len(p) > maxCgroupParentLength
	if strings.HasSuffix(p, ".slice") && !strings.Contains(p, "/") {
		bad = bad || !systemdSliceRegex.MatchString(p)
	} else {
		bad = bad || !cgroupPathRegex.MatchString(p)
		for _, part := range strings.Split(p, "/") {
			bad = bad || part == "." || part == ".."
		}
	}
	if bad {
		return fmt.Errorf("cgroup_parent %q is neither a cgroup path (e.g. /vault-plugins/, components of letters, "+
			"digits, '_', '-', '.', ':' and '@' without '.' or '..') nor a systemd slice (e.g. vault-plugins.slice), "+
			"at most %d characters", p, maxCgroupParentLength)
	}
	return nil
}

func runtimeStorageKey(runtimeType, name string) string {
	return runtimeStoragePrefix + runtimeType + "/" + name
}

// getRuntime reads one runtime from storage; nil when there is none.
func getRuntime(ctx context.Context, s logical.Storage, runtimeType, name string) (*runtimeEntry, error) {
	return decodeRuntime(s.Get(ctx, runtimeStorageKey(runtimeType, name)))
}

func decodeRuntime(se *logical.StorageEntry, err error) (*runtimeEntry, error) {
	if err != nil {
		return nil, fmt.Errorf("reading runtime: %w", err)
	}
	if se == nil {
		return nil, nil
	}
	var stored storedRuntime
	if err := json.Unmarshal(se.Value, &stored); err != nil {
		return nil, fmt.Errorf("decoding runtime %q: %w", se.Key, err)
	}
	if stored.Format != runtimeEntryFormat {
		return nil, fmt.Errorf("runtime %q is stored in format %d; this plugin reads format %d",
			se.Key, stored.Format, runtimeEntryFormat)
	}
	return &stored.runtimeEntry, nil
}

func putRuntime(ctx context.Context, s logical.Storage, r *runtimeEntry) error {
	se, err := logical.StorageEntryJSON(runtimeStorageKey(r.Type, r.Name), storedRuntime{Format: runtimeEntryFormat, runtimeEntry: *r})
	if err != nil {
		return fmt.Errorf("encoding runtime %q: %w", r.Name, err)
	}
	if err := s.Put(ctx, se); err != nil {
		return fmt.Errorf("storing runtime %q: %w", r.Name, err)
	}
	return nil
}

func deleteRuntime(ctx context.Context, s logical.Storage, runtimeType, name string) error {
	if err := s.Delete(ctx, runtimeStorageKey(runtimeType, name)); err != nil {
		return fmt.Errorf("deleting runtime %q: %w", name, err)
	}
	return nil
}
