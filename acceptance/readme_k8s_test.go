package acceptance

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/k8stest"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
)

// The README's "On Kubernetes" blocks (marked "<!-- kubernetes: ... -->"),
// pasted as a person on the test node does: a node of their own (make
// k8s), a dev server started inside its network namespace (make dev there),
// and the blocks run in a shell inside it with the node's exports, in
// order. On OpenBao with bao for vault, as the README says. A node per
// server: the blocks make a namespace, which a node without a
// controller-manager never deletes.
func TestReadmeOnKubernetes(t *testing.T) {
	var blocks []readmeBlock
	for _, b := range readmeShellBlocks(t, "../README.md") {
		if b.kubernetes != "" {
			blocks = append(blocks, b)
		}
	}
	if len(blocks) < 3 {
		t.Fatalf("%d blocks marked for the Kubernetes node: the README's markers moved", len(blocks))
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	vaulttest.EachServer(t, func(t *testing.T, k vaulttest.Kind) {
		serverBin, err := filepath.Abs(k.Binary(t))
		if err != nil {
			t.Fatal(err)
		}
		node := k8stest.Start(t)
		v := k.StartDevIn(t, node.Netns, filepath.Join(node.Bin, "rc-k8s-forward"), "runtimes")
		dir := t.TempDir()
		for _, b := range blocks {
			script := strings.NewReplacer("scripts/", repo+"/scripts/").Replace(b.script)
			script = k.Says(script)
			cmd := exec.Command("nsenter", "--net="+node.Netns, "bash", "-euo", "pipefail", "-x", "-c", expectFailures(script))
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), k.EnvPrefix+"ADDR="+v.Addr, k.EnvPrefix+"TOKEN="+v.Token,
				"KUBECONFIG="+node.Kubeconfig, "RC_K8S_NETNS="+node.Netns, "RC_K8S_CONTAINERD="+node.Containerd,
				"PATH="+filepath.Dir(serverBin)+":"+os.Getenv("PATH"))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s, pasted as it is on the test node, fails (%v):\n%s\n--- output:\n%s", b.where, err, b.script, out)
			}
			if os.Getenv("RC_README_VERBOSE") != "" {
				t.Logf("%s:\n%s", b.where, out)
			}
		}
		// The last block deleted the mount: its pod is gone.
		vaulttest.Eventually(t, time.Minute, "no plugin pod left", func() error {
			out, err := node.TryKubectl("get", "pods", "-A", "-l", "io.github.vault-plugin-runtime-catalog.managed-by", "-o", "name")
			if err == nil && strings.TrimSpace(out) != "" {
				err = &leftError{out}
			}
			return err
		})
	})
}

type leftError struct{ what string }

func (e *leftError) Error() string { return "left: " + e.what }
