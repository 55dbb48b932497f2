package acceptance

import (
	"os"
	"testing"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
)

// TestMain removes the plugin binary the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	vaulttest.RemoveBuild()
	os.Exit(code)
}
