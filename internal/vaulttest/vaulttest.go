// Package vaulttest starts real Vault servers with this plugin mounted and
// drives them with the real vault CLI, for acceptance tests and benchmarks.
//
// Tests on real parts are opt-in, like the models' VAULT_ACC: they run with
// RC_ACC=1 (`make test` sets it) or under CI=true, and skip otherwise, so
// `make unit` stays fast even where an engine answers. The vault binary comes
// from $VAULT_BINARY (scripts/build-vault.sh builds it; `make test` sets it),
// the bao binary from $BAO_BINARY (scripts/build-openbao.sh).
// When a test runs and a real part is missing, it is skipped, except under
// CI=true where that is a failure.
package vaulttest

import (
	"net"
	"os"
)

// T is the part of testing.TB these helpers use, so that the benchmark
// program can drive a Vault with them too.
type T interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	Failed() bool
}

// PluginName is the name the plugin is registered and enabled under.
const PluginName = "vault-plugin-runtime-catalog"

// RequireAcceptance skips a test on real parts unless they were asked for.
func RequireAcceptance(t T) {
	t.Helper()
	if os.Getenv("RC_ACC") == "" && os.Getenv("CI") != "true" {
		t.Skipf("a test on a real Vault or Docker Engine: set RC_ACC=1 to run it (make test does)")
	}
}

// RequireReal fails (under CI=true) or skips the test when something real it
// needs is missing; how tells the reader how to provide it.
func RequireReal(t T, what, how string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing, and CI=true: %s", what, how)
	}
	t.Skipf("%s is missing: %s", what, how)
}

// FreePort returns a loopback port nothing listens on right now.
func FreePort(t T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ShortTempDir is a temporary directory with a short path: Unix socket paths
// are limited to about 108 bytes, and t.TempDir() paths are long.
func ShortTempDir(t T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
