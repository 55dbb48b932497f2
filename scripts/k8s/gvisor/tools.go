//go:build tools

// Package tools pins the gVisor commands that scripts/build-k8s.sh builds.
package tools

import (
	_ "gvisor.dev/gvisor/runsc"
	_ "gvisor.dev/gvisor/shim"
)
