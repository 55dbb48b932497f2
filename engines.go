package runtimecatalog

import (
	"fmt"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/reqerr"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime/docker"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime/kubernetes"
)

// The kinds of engine a runtime's engine setting can name, told apart by
// its address: the one place where a new kind of engine is added (its
// package under runtime/ does the rest).
//
//	""                                 the environment's Docker Engine
//	unix:///path/to/socket             a service speaking the Docker Engine API (Podman)
//	kubernetes://NAMESPACE[/kubeconfig][?settings] a Kubernetes cluster: a pod per plugin

// dialEngine is the engine at address; nothing is asked of it until it is
// used.
func dialEngine(address string) (runtime.Engine, error) {
	if kubernetes.IsAddress(address) {
		return kubernetes.New(address)
	}
	return docker.New(address), nil
}

// checkEngine says why r's engine setting names no engine, or asks what its
// kind cannot do: a 400.
func checkEngine(r runtime.Runtime) error {
	var err error
	switch {
	case r.Engine == "":
	case kubernetes.IsAddress(r.Engine):
		if _, err = kubernetes.Parse(r.Engine); err == nil {
			err = kubernetes.CheckRuntime(r)
		}
	default:
		if err = docker.CheckAddress(r.Engine); err != nil {
			err = fmt.Errorf("%w; or %sNAMESPACE[/abs/path/to/kubeconfig][?carrier_image=IMAGE&carrier_mount=image_volume|init_container&host_addresses=IP,IP] for a Kubernetes cluster; empty for the Docker Engine of the environment",
				err, kubernetes.Scheme)
		}
	}
	if err != nil {
		return reqerr.BadRequestf("%s", err.Error())
	}
	return nil
}
