// Command vault-plugin-runtime-catalog serves the runtime catalog as a Vault
// external plugin.
package main

import (
	"os"
	"runtime/debug"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"

	runtimecatalog "github.com/runtime-catalog/vault-plugin-runtime-catalog"
)

// memoryLimit is the soft limit the Go runtime collects garbage to stay
// under, unless GOMEMLIMIT says otherwise. A list of thousands of runtimes
// leaves megabytes of response buffers behind each time, and without a
// limit RSS grows far past what the plugin holds; a lower limit costs list
// throughput for little memory (README, Performance).
const memoryLimit = 64 << 20

// gcPercent lets the heap grow by half its live size between collections,
// not by all of it: this plugin's live heap is small and most of what it
// allocates is short-lived response buffers (README, Performance).
const gcPercent = 50

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	apiClientMeta := &api.PluginAPIClientMeta{}
	flags := apiClientMeta.FlagSet()
	if err := flags.Parse(os.Args[1:]); err != nil {
		fatal(err)
	}

	// With AutoMTLS (what Vault uses) go-plugin ignores the TLS provider;
	// it only matters for a Vault that still hands out a wrapping token.
	err := runtimecatalog.Serve(api.VaultPluginTLSProvider(apiClientMeta.GetTLSConfig()))
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	hclog.New(&hclog.LoggerOptions{}).Error("plugin shutting down", "error", err)
	os.Exit(1)
}
