package k8stest

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
)

// TestNode starts the test node once and proves it: the node is Ready, and a
// pod built here runs, logs and is deleted, under the default runtime (runc)
// and under the RuntimeClass runsc (gVisor, which shows its own kernel).
func TestNode(t *testing.T) {
	n := Start(t)

	nodes := n.Kubectl(t, "get", "nodes", "--no-headers")
	if fields := strings.Fields(nodes); len(fields) < 2 || fields[0] != n.Name || fields[1] != "Ready" {
		t.Fatalf("kubectl get nodes:\n%s", nodes)
	}
	t.Logf("kubectl get nodes: %s", strings.TrimSpace(nodes))

	const image = "localhost/rc-k8s-hello:1"
	n.Image(t, BuildStatic(t, "internal/k8stest/testdata/hello"), image)
	host := hostKernel(t)

	for _, rc := range []struct{ name, class string }{{"runc", ""}, {"runsc", "runsc"}} {
		t.Run(rc.name, func(t *testing.T) {
			pod := "hello-" + rc.name
			class := ""
			if rc.class != "" {
				class = "  runtimeClassName: " + rc.class + "\n"
			}
			start := time.Now()
			n.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: default
spec:
%s  restartPolicy: Never
  automountServiceAccountToken: false
  enableServiceLinks: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: hello
    image: %s
    imagePullPolicy: Never
`, pod, class, image))
			vaulttest.Eventually(t, 2*time.Minute, "pod "+pod+" succeeds", func() error {
				phase, err := n.TryKubectl("get", "pod", pod, "-o", "jsonpath={.status.phase}")
				if err != nil {
					return err
				}
				if phase == "Failed" {
					desc, _ := n.TryKubectl("describe", "pod", pod)
					t.Fatalf("pod %s failed:\n%s", pod, desc)
				}
				if phase != "Succeeded" {
					desc, _ := n.TryKubectl("get", "pod", pod, "-o", "jsonpath={.status}")
					return fmt.Errorf("phase %q: %s", phase, desc)
				}
				return nil
			})
			t.Logf("pod %s ran to completion in %v", pod, time.Since(start).Round(time.Millisecond))

			log := strings.TrimSpace(n.Kubectl(t, "logs", pod))
			kernel, ok := strings.CutPrefix(log, "hello from a pod, kernel ")
			if !ok {
				t.Fatalf("log of %s: %q", pod, log)
			}
			// gVisor answers uname with a kernel of its own; runc shares the host's.
			if sandboxed := kernel != host; sandboxed != (rc.class == "runsc") {
				t.Fatalf("pod %s under %s saw kernel %q, the host's is %q", pod, rc.name, kernel, host)
			}
			t.Logf("log of %s: %s", pod, log)

			n.Kubectl(t, "delete", "pod", pod, "--wait=true", "--timeout=60s")
			if out, err := n.TryKubectl("get", "pod", pod); err == nil || !strings.Contains(err.Error(), "NotFound") {
				t.Fatalf("pod %s still there after delete: %s %v", pod, out, err)
			}
		})
	}
}

func hostKernel(t *testing.T) string {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 0, len(u.Release))
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}
