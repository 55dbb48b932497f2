package runtimecatalog

import (
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/reqerr"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime/docker"
)

// The kinds of engine a runtime's engine setting can name, told apart by
// its address: the one place where a new kind of engine is added (its
// package under runtime/ does the rest).

// dialEngine is the engine at address ("" for the environment's Docker
// Engine); nothing is asked of it until it is used.
func dialEngine(address string) (runtime.Engine, error) {
	return docker.New(address), nil
}

// checkEngineAddress says why address, a runtime's engine setting, names
// no engine: a 400.
func checkEngineAddress(address string) error {
	if address == "" {
		return nil
	}
	if err := docker.CheckAddress(address); err != nil {
		return reqerr.BadRequestf("%s", err.Error())
	}
	return nil
}
