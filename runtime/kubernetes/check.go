package kubernetes

import (
	"fmt"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// CheckRuntime says what of r no pod can honour, before any start: a
// runtime write refuses it.
func CheckRuntime(r runtime.Runtime) error {
	if r.CgroupParent != "" {
		return fmt.Errorf("%w: cgroup_parent %q has no meaning on Kubernetes (the kubelet owns the cgroup hierarchy); "+
			"leave it empty, and bound what a namespace's plugins use together with a ResourceQuota in that namespace",
			ErrUnsupported, r.CgroupParent)
	}
	return nil
}
