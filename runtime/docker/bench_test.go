package docker_test

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/testimage"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
	dockerengine "github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime/docker"
)

// BenchmarkCheckVsDockerRun measures, side by side in one run, a full check
// (create, start, handshake, version, stop, removal) and `docker run --rm`
// of the same image (create, start, exit, removal: without go-plugin's
// handshake variables the plugin exits at once). It reports both and their
// ratio: what the handshake and the clean stop cost over a bare container.
func BenchmarkCheckVsDockerRun(b *testing.B) {
	docker := testimage.Docker(b)
	id := testimage.Build(b, docker)
	for _, oci := range []string{"runc", "runsc"} {
		b.Run(oci, func(b *testing.B) {
			var checkTotal, runTotal time.Duration
			for i := 0; i < b.N; i++ {
				began := time.Now()
				if _, err := runtime.Check(context.Background(), dockerengine.With(docker, ""), testimage.Plugin(id), runtime.Runtime{OCIRuntime: oci}, checkOptions()); err != nil {
					b.Fatal(err)
				}
				checkTotal += time.Since(began)

				began = time.Now()
				// The plugin exits 1 when not started by go-plugin: expected.
				out, err := exec.Command("docker", "run", "--rm", "--runtime="+oci, id).CombinedOutput()
				if _, exited := err.(*exec.ExitError); err != nil && !exited {
					b.Fatalf("docker run: %v\n%s", err, out)
				}
				runTotal += time.Since(began)
			}
			checkMS := float64(checkTotal.Milliseconds()) / float64(b.N)
			runMS := float64(runTotal.Milliseconds()) / float64(b.N)
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(checkMS, "check-ms")
			b.ReportMetric(runMS, "docker-run-ms")
			b.ReportMetric(checkMS/runMS, "check/docker-run")
		})
	}
}
