package vaulttest

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// Kind is a server this plugin runs on: Vault or OpenBao. The two take the
// same subcommands, configuration files and plugin protocol; they differ in
// the binary's name, in the prefix of the CLI's environment variables
// (BAO_ADDR rather than VAULT_ADDR) and in what OpenBao lacks (the built-in
// runtime catalog and containerized plugins).
type Kind struct {
	// Name names the subtests of EachServer: "vault" or "openbao".
	Name string
	// Product is the server's name in prose: "Vault" or "OpenBao".
	Product string
	// CLI is the command's name in printed hints: "vault" or "bao".
	CLI string
	// EnvPrefix is the prefix of the CLI's environment: VAULT_ or BAO_.
	EnvPrefix string
	// BinaryEnv is the variable that holds the binary's path.
	BinaryEnv string
	// how to get a binary, for a test that has none
	buildHint string
}

var (
	// Vault is HashiCorp Vault, built by scripts/build-vault.sh.
	Vault = Kind{Name: "vault", Product: "Vault", CLI: "vault", EnvPrefix: "VAULT_", BinaryEnv: "VAULT_BINARY",
		buildHint: "run `make test`, or export VAULT_BINARY=$(scripts/build-vault.sh)"}
	// OpenBao is OpenBao 2.x, built by scripts/build-openbao.sh.
	OpenBao = Kind{Name: "openbao", Product: "OpenBao", CLI: "bao", EnvPrefix: "BAO_", BinaryEnv: "BAO_BINARY",
		buildHint: "run `make test`, or export BAO_BINARY=$(scripts/build-openbao.sh) (it builds OpenBao from ../shared/openbao once, about 10 minutes) or the path of a bao binary of your own"}
	// Kinds are the servers the acceptance tests run on.
	Kinds = []Kind{Vault, OpenBao}
)

// KindNamed is the kind called name ("vault" or "openbao").
func KindNamed(name string) (Kind, bool) {
	for _, k := range Kinds {
		if k.Name == name {
			return k, true
		}
	}
	return Kind{}, false
}

// IsOpenBao tells the tests that expect something else of OpenBao.
func (k Kind) IsOpenBao() bool { return k.Name == OpenBao.Name }

// Binary is the server binary to test with; the test skips (fails under
// CI=true) when there is none.
func (k Kind) Binary(t T) string {
	t.Helper()
	RequireAcceptance(t)
	bin := os.Getenv(k.BinaryEnv)
	if bin == "" {
		RequireReal(t, "a "+k.CLI+" binary ($"+k.BinaryEnv+")", k.buildHint)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s=%s: %v", k.BinaryEnv, bin, err)
	}
	return bin
}

// mlockLine is the configuration line that lets Vault run without
// mlock (required with Raft, and as an unprivileged user); OpenBao has no
// mlock and warns of the field.
func (k Kind) mlockLine() string {
	if k.IsOpenBao() {
		return ""
	}
	return "disable_mlock    = true\n"
}

// CLIEnv is the environment that points the CLI at addr with token, and
// keeps its output plain.
func (k Kind) CLIEnv(addr, token string) []string {
	return []string{k.EnvPrefix + "ADDR=" + addr, k.EnvPrefix + "TOKEN=" + token, k.EnvPrefix + "FORMAT=", "NO_COLOR=1"}
}

// vaultCommand is the vault command where a command starts.
var vaultCommand = regexp.MustCompile(`(^|[\s;|&(])vault `)

// Says is a script or hint written for Vault, said for k: on OpenBao bao
// for the vault command and BAO_ for its VAULT_ variables; paths such as
// vault-plugin-runtime-catalog are left alone.
func (k Kind) Says(script string) string {
	if k.CLI == Vault.CLI {
		return script
	}
	script = vaultCommand.ReplaceAllString(script, "${1}"+k.CLI+" ")
	return strings.ReplaceAll(script, Vault.EnvPrefix, k.EnvPrefix)
}

// EachServer runs f as a subtest per server, named for it (TestX/vault,
// TestX/openbao). RC_SERVERS (a comma-separated list of kind names) narrows
// them, for a quick run on one server; unset, both run.
func EachServer(t *testing.T, f func(t *testing.T, k Kind)) {
	t.Helper()
	for _, k := range Kinds {
		k := k
		t.Run(k.Name, func(t *testing.T) {
			if !Selected(k) {
				t.Skipf("RC_SERVERS=%s leaves %s out", os.Getenv("RC_SERVERS"), k.Name)
			}
			f(t, k)
		})
	}
}

// Selected says whether RC_SERVERS lets k's tests run.
func Selected(k Kind) bool {
	only := os.Getenv("RC_SERVERS")
	if only == "" {
		return true
	}
	for _, name := range strings.Split(only, ",") {
		if strings.TrimSpace(name) == k.Name {
			return true
		}
	}
	return false
}
