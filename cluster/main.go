// Command cluster runs a 3-node Vault Raft cluster on 127.0.0.1 with the
// plugin registered by its sha256 and enabled at runtimes/ (compressed
// lists on), for a person to try failover by hand. `make cluster` runs it;
// Ctrl-C stops every node, their plugins and containers.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
)

func main() {
	nodes := flag.Int("nodes", 3, "number of Vault nodes")
	path := flag.String("path", "runtimes", "where the plugin is enabled")
	flag.Parse()

	t := vaulttest.NewProgram()

	start := time.Now()
	c := vaulttest.StartCluster(t, *nodes, *path)
	leader := c.Leader(t, 30*time.Second, nil)
	leader.CompressLists(t, *path)

	vault, _ := filepath.Abs(os.Getenv("VAULT_BINARY"))
	var b strings.Builder
	fmt.Fprintf(&b, "\nA %d-node Vault Raft cluster is up (%.0f s), the runtime catalog at %s/ (logs and data: %s):\n\n",
		len(c.Nodes), time.Since(start).Seconds(), *path, c.Dir)
	for _, s := range c.Nodes {
		role := "standby"
		if s == leader {
			role = "active"
		}
		fmt.Fprintf(&b, "  %s  %s  %-7s  pid %d  plugin directory %s\n", s.NodeID, s.Addr, role, s.Pid(), filepath.Join(s.Dir, "plugins"))
	}
	fmt.Fprintf(&b, `
  export VAULT_ADDR=%s VAULT_TOKEN=%s PATH="%s:$PATH"
  # unseal key (a node restarted by hand needs it): %s

  vault operator raft list-peers
  vault write %s/catalog/container/limited oci_runtime=runsc memory_bytes=67108864
  VAULT_ADDR=%s vault read %s/catalog/container/limited     # through a standby
  vault operator step-down                                      # leadership moves; nothing is lost
  kill -9 %d                                                    # the active node dies; another takes over

Ctrl-C stops the cluster.
`, leader.Addr, c.Token, filepath.Dir(vault), c.UnsealKey, *path, c.Standbys(leader)[0].Addr, *path, leader.Pid())
	fmt.Print(b.String())
	select {} // until Ctrl-C
}
