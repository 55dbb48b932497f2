package docker

import (
	"os"
	"testing"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// TestMain removes what this test process made in the temp directory: the
// socket directories' root of its starts and the plugin it built.
func TestMain(m *testing.M) {
	code := m.Run()
	os.RemoveAll(runtime.OwnSocketRoot())
	vaulttest.RemoveBuild() // the test image's plugin binary
	os.Exit(code)
}
