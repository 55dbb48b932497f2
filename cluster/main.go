// Command cluster runs a 3-node Vault Raft cluster on 127.0.0.1 with the
// plugin registered by its sha256 and enabled at runtimes/ (compressed
// lists on), for a person to try failover by hand. `make cluster` runs it;
// Ctrl-C stops every node, their plugins and containers, and exits 0. With
// SERVER=openbao the nodes are OpenBao's, and the hints bao commands.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
)

func main() {
	nodes := flag.Int("nodes", 3, "number of Vault nodes")
	path := flag.String("path", "runtimes", "where the plugin is enabled")
	flag.Parse()

	t := vaulttest.NewProgram()
	server := os.Getenv("SERVER")
	if server == "" {
		server = vaulttest.Vault.Name
	}
	k, ok := vaulttest.KindNamed(server)
	if !ok {
		t.Fatalf("SERVER=%s: it is vault (the default) or openbao", server)
	}

	// Starting takes about half a minute: say so, and that it moves.
	start := time.Now()
	fmt.Printf("starting a %d-node %s Raft cluster (about 30 s) ", *nodes, k.Product)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Second):
				fmt.Printf("%.0f s ", time.Since(start).Seconds())
			}
		}
	}()
	c := k.StartCluster(t, *nodes, *path)
	leader := c.Leader(t, 30*time.Second, nil)
	leader.CompressLists(t, *path)
	close(done)

	// A pid file per node, by API port: the hints find the active node's
	// process from sys/leader, which holds after a step-down.
	pids := filepath.Join(c.Dir, "pids")
	if err := os.MkdirAll(pids, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range c.Nodes {
		if err := os.WriteFile(filepath.Join(pids, port(s.Addr)), []byte(strconv.Itoa(s.Pid())), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	binary, _ := filepath.Abs(os.Getenv(k.BinaryEnv))
	var b strings.Builder
	fmt.Fprintf(&b, "\n\nA %d-node %s Raft cluster is up (%.0f s), the runtime catalog at %s/ (logs and data: %s):\n\n",
		len(c.Nodes), k.Product, time.Since(start).Seconds(), *path, c.Dir)
	for _, s := range c.Nodes {
		role := "standby"
		if s == leader {
			role = "active"
		}
		fmt.Fprintf(&b, "  %s  %s  %-7s  pid %d  plugin directory %s\n", s.NodeID, s.Addr, role, s.Pid(), filepath.Join(s.Dir, "plugins"))
	}
	// The hints are written for vault and, on OpenBao, said with bao and
	// BAO_ variables: the two CLIs take the same subcommands.
	hints := fmt.Sprintf(`
  export VAULT_ADDR=%s VAULT_TOKEN=%s PATH="%s:$PATH"
  # unseal key (a node restarted by hand needs it): %s

  vault operator raft list-peers
  vault write %s/catalog/container/limited oci_runtime=runsc memory_bytes=67108864
  VAULT_ADDR=%s vault read %s/catalog/container/limited     # through a standby
  vault operator step-down                                      # leadership moves; nothing is lost
  until leader=$(vault read -field=leader_address sys/leader 2>/dev/null) && [ -n "$leader" ]; do sleep 1; done
  kill -9 $(cat %s/${leader##*:})                               # the active node, found after the step-down, dies

Ctrl-C stops the cluster.
`, leader.Addr, c.Token, filepath.Dir(binary), c.UnsealKey, *path, c.Standbys(leader)[0].Addr, *path, pids)
	b.WriteString(k.Says(hints))
	fmt.Print(b.String())

	// A node that dies (killed by hand) is said, with the addresses that
	// still answer: the exported VAULT_ADDR may be the dead one.
	seen := map[*vaulttest.Server]bool{}
	for {
		time.Sleep(time.Second)
		for _, s := range c.Nodes {
			if seen[s] || !s.Exited() {
				continue
			}
			seen[s] = true
			var alive []string
			for _, other := range c.Nodes {
				if !other.Exited() {
					alive = append(alive, other.Addr)
				}
			}
			fmt.Printf("\n%s (%s) exited. Still up: %s\n", s.NodeID, s.Addr, strings.Join(alive, " "))
			if len(alive) > 0 {
				fmt.Printf("  export %sADDR=%s\n", k.EnvPrefix, alive[0])
			}
		}
	}
}

// port is the port of an address such as http://127.0.0.1:8200.
func port(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }
