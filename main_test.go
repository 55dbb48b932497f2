package runtimecatalog

import (
	"os"
	"testing"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// TestMain removes the socket directories' root that run-config's preview
// made for this test process.
func TestMain(m *testing.M) {
	code := m.Run()
	os.RemoveAll(runtime.OwnSocketRoot())
	os.Exit(code)
}
