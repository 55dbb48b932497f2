package runtime

import "errors"

// Errors a caller can tell apart with errors.Is, whatever the engine.
var (
	ErrImageMissing      = errors.New("missing image")
	ErrSHA256Mismatch    = errors.New("SHA256 mismatch")
	ErrUnknownOCIRuntime = errors.New("unknown OCI runtime")
	ErrContainerExited   = errors.New("plugin container exited")
	// ErrStartRefused is the engine or OCI runtime refusing the container
	// for what it was asked (a limit beyond the host, a missing executable,
	// an invalid cgroup): the registration's or the runtime's fault.
	ErrStartRefused = errors.New("the engine refused the container")
)

// Short is an ID as messages show it: its first 12 characters.
func Short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
