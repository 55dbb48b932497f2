package runtimecatalog

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/reqerr"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

const (
	// runtimeTypeContainer is the only plugin runtime type Vault defines.
	runtimeTypeContainer = "container"

	// minMemoryBytes is the smallest memory limit Docker Engine accepts
	// ("Minimum memory limit allowed is 6MB"); anything below it would only
	// fail when a plugin starts.
	minMemoryBytes = 6 * 1024 * 1024

	// minNanoCPUs is the smallest CPU limit the Docker Engine enforces as
	// written: it becomes a CFS quota of cpu_nanos/10,000 µs per 100 ms
	// period, the kernel's smallest quota is 1 ms, and below 10,000 the quota
	// rounds to 0, which means no limit at all.
	minNanoCPUs = 10_000_000

	maxOCIRuntimeLength     = 64
	maxCgroupParentLength   = 255
	supportedRuntimeTypeMsg = "%q is not a supported plugin runtime type"
)

// runtimeEntry is one plugin runtime: how the containers of the plugins that
// reference it are run. Its settings are the runtime package's own, so what
// is stored is exactly what a start uses.
type runtimeEntry struct {
	Type string `json:"type"`
	runtime.Runtime
}

func newRuntimeEntry(name string) *runtimeEntry {
	return &runtimeEntry{Type: runtimeTypeContainer, Runtime: runtime.Runtime{Name: name}}
}

// view is the runtime as responses show it: the OCI runtime containers
// really get, whose default the runtime package owns.
func (r *runtimeEntry) view() runtimeEntry {
	v := *r
	v.OCIRuntime = r.EffectiveOCIRuntime()
	return v
}

// toResponseData is the runtime as Vault's catalog returns it.
func (r *runtimeEntry) toResponseData() map[string]interface{} {
	v := r.view()
	return fieldData(&v)
}

// runtimeSummary is a runtime's key_info: a summary per name, as Vault's
// key_info conventionally is. The full settings are in "runtimes"; repeating
// them here doubled the bytes of a list, and its time.
type runtimeSummary struct {
	OCIRuntime string `json:"oci_runtime"`
}

func (r *runtimeEntry) summary() runtimeSummary {
	return runtimeSummary{OCIRuntime: r.EffectiveOCIRuntime()}
}

func (r *runtimeEntry) hasCgroupLimits() bool {
	return r.NanoCPUs != 0 || r.MemoryBytes != 0 || r.CgroupParent != ""
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
		return reqerr.BadRequestf(supportedRuntimeTypeMsg, t)
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
	if r.NanoCPUs < 0 {
		return reqerr.BadRequest(errors.New("runtime cpu in nanos cannot be negative"))
	}
	if r.MemoryBytes < 0 {
		return reqerr.BadRequest(errors.New("runtime memory in bytes cannot be negative"))
	}
	if r.NanoCPUs != 0 && r.NanoCPUs < minNanoCPUs {
		return reqerr.BadRequestf("cpu_nanos %d is too small: use 0 for no limit or at least %d (0.01 CPU, the smallest CPU limit "+
			"the Docker Engine enforces; below it the limit is dropped or the container cannot start)", r.NanoCPUs, minNanoCPUs)
	}
	if r.MemoryBytes != 0 && r.MemoryBytes < minMemoryBytes {
		return reqerr.BadRequestf("memory_bytes %d is too small: use 0 for no limit or at least %d (6 MiB, Docker's minimum)",
			r.MemoryBytes, minMemoryBytes)
	}
	if r.OCIRuntime != "" && (len(r.OCIRuntime) > maxOCIRuntimeLength || !ociRuntimeRegex.MatchString(r.OCIRuntime)) {
		return reqerr.BadRequestf("oci_runtime %q is not a plain runtime name: at most %d letters, digits, '_', '-' and '.', "+
			"starting with a letter or digit (the name the Docker Engine knows the runtime by, e.g. runsc or runc)",
			r.OCIRuntime, maxOCIRuntimeLength)
	}
	if r.CgroupParent != "" {
		if err := validateCgroupParent(r.CgroupParent); err != nil {
			return err
		}
	}
	if err := checkEngine(r.Runtime); err != nil {
		return err
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
		return reqerr.BadRequest(fmt.Errorf("cgroup_parent %q is neither a cgroup path (e.g. /vault-plugins/, components of letters, "+
			"digits, '_', '-', '.', ':' and '@' without '.' or '..') nor a systemd slice (e.g. vault-plugins.slice), "+
			"at most %d characters", p, maxCgroupParentLength))
	}
	return nil
}
