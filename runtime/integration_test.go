package runtime_test

import (
	"context"
	"testing"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/testimage"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

func checkOptions() runtime.CheckOptions {
	return runtime.CheckOptions{ClusterID: "test-cluster", VaultVersion: "1.21.0", Hardening: runtime.DefaultHardening}
}

func TestCheckHandshakeUnderEachRuntime(t *testing.T) {
	docker := testimage.Docker(t)
	id := testimage.Build(t, docker)
	for _, oci := range []string{"runc", "runsc"} {
		t.Run(oci, func(t *testing.T) {
			res, err := runtime.Check(context.Background(), docker, testimage.Plugin(id), runtime.Runtime{OCIRuntime: oci}, checkOptions())
			if err != nil {
				t.Fatal(err)
			}
			if res.PluginVersion != testimage.Version {
				t.Fatalf("plugin version = %q, want %q", res.PluginVersion, testimage.Version)
			}
			t.Logf("%s: create %v, start %v, handshake %v, total %v", oci, res.Create, res.Start, res.Handshake, res.Total)
			testimage.AssertNoContainers(t, docker)
		})
	}
}
