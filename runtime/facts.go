package runtime

import (
	"errors"
	"fmt"
	"strings"
)

// EngineFacts are what an engine says of the OCI runtimes it runs
// containers with.
type EngineFacts struct {
	Address string
	// Runtimes are the OCI runtimes it has, sorted; DefaultRuntime the one
	// a container that names none gets.
	Runtimes       []string
	DefaultRuntime string
	// OnlyDefault is set for an engine that runs every container under its
	// default, whatever the container asks for, accepting any name silently
	// (a Podman service's Docker-compatible API).
	OnlyDefault bool
	// Refuse, when set, is the engine's own words for Refusal.
	Refuse func(oci string) string `json:"-"`
}

// ErrFactsWithheld is an engine that answers but does not let this plugin
// see which OCI runtimes it has (a Kubernetes Role without a cluster-wide
// list of RuntimeClasses): its containers may well start.
var ErrFactsWithheld = errors.New("the engine does not say which OCI runtimes it has")

// Runs reports whether a container that asks for the OCI runtime oci is
// run under it.
func (f EngineFacts) Runs(oci string) bool {
	if f.OnlyDefault {
		return oci == f.DefaultRuntime
	}
	for _, name := range f.Runtimes {
		if name == oci {
			return true
		}
	}
	return false
}

// Usable are the OCI runtimes a container can really be run under.
func (f EngineFacts) Usable() []string {
	if f.OnlyDefault {
		return []string{f.DefaultRuntime}
	}
	return f.Runtimes
}

// Refusal says why a container asking for oci would not run under it.
func (f EngineFacts) Refusal(oci string) string {
	if f.Refuse != nil {
		return f.Refuse(oci)
	}
	return fmt.Sprintf("the engine at %s has no OCI runtime %s; it has %s", f.Address, oci, strings.Join(f.Runtimes, ", "))
}
