package acceptance

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/testimage"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/testregistry"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
)

// A newcomer's path: the hints `make dev` prints, then every shell block of
// the README, in order, pasted into a fresh dev server as make dev starts
// it (the plugin at runtimes/, compressed lists, kv-plugin:0.25.0 built),
// with the real vault CLI. A command fails the test unless the README says
// it fails (a trailing "# fails: why"). Blocks meant only to be read are
// marked "<!-- not run: why -->" on the line before them.
//
// On OpenBao the same README runs with bao in place of vault and BAO_ for
// VAULT_, as its OpenBao section says a reader does; the blocks only Vault
// can run are marked "<!-- vault only: why -->".
func TestReadmeAsANewcomerPastesIt(t *testing.T) {
	vaulttest.EachServer(t, testReadmeAsANewcomerPastesIt)
}

func testReadmeAsANewcomerPastesIt(t *testing.T, k vaulttest.Kind) {
	serverBin, err := filepath.Abs(k.Binary(t))
	if err != nil {
		t.Fatal(err)
	}
	docker := testimage.Docker(t)
	testimage.BuildKV(t, docker) // kv-plugin:0.25.0, as make dev builds it
	v := k.StartDev(t, "runtimes")
	v.CompressLists(t, "runtimes")

	hints, err := exec.Command("../scripts/dev.sh", "--hints", strings.TrimPrefix(v.Addr, "http://"), serverBin, "server.log").Output()
	if err != nil {
		t.Fatalf("scripts/dev.sh --hints: %v", err)
	}
	var devSteps []string
	for _, line := range strings.Split(string(hints), "\n") {
		if strings.HasPrefix(line, "  ") { // the commands; the rest is prose
			devSteps = append(devSteps, strings.TrimPrefix(line, "  "))
		}
	}
	blocks := []readmeBlock{{where: "make dev's hints", script: strings.Join(devSteps, "\n")}}
	blocks = append(blocks, readmeShellBlocks(t, "../README.md")...)

	// The README's registry is one of your own on 127.0.0.1:5000 with
	// user ci and password s3cret; this one listens elsewhere, with
	// another password, and docker login writes to a config of the test's.
	reg := testregistry.Start(t)
	dockerConfig := t.TempDir()
	dir := t.TempDir()
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, b := range blocks {
		if b.skip != "" {
			t.Logf("%s: not run (%s)", b.where, b.skip)
			continue
		}
		if b.kubernetes != "" {
			t.Logf("%s: not run here (%s)", b.where, b.kubernetes)
			continue
		}
		if b.vaultOnly != "" && k.IsOpenBao() {
			t.Logf("%s: not run on OpenBao (%s)", b.where, b.vaultOnly)
			continue
		}
		if strings.Contains(b.script, "/run/rc-podman/") && os.Getenv(testimage.EnvPodmanRunsc) == "" {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s needs the Podman services, and CI=true: run `make test` as root", b.where)
			}
			t.Logf("%s: not run: no Podman services (make test starts them as root)", b.where)
			continue
		}
		// The README's address is make dev's; this server listens elsewhere.
		// Run from the clone, as the README's scripts/ paths are, but in a
		// directory of the test's own for the files the blocks write. The
		// plugin binary is the one this server runs, as make dev's is a copy
		// of bin/'s.
		script := strings.NewReplacer("http://127.0.0.1:8200", v.Addr, "127.0.0.1:5000", reg.Addr, "s3cret", reg.Password,
			"scripts/", repo+"/scripts/", "bin/"+vaulttest.PluginName, filepath.Join(v.Dir, "plugins", vaulttest.PluginName)).Replace(b.script)
		if k.IsOpenBao() && b.where != "make dev's hints" {
			script = k.Says(script)
		}
		cmd := exec.Command("bash", "-euo", "pipefail", "-x", "-c", expectFailures(script))
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), k.EnvPrefix+"ADDR="+v.Addr, k.EnvPrefix+"TOKEN="+v.Token, "DOCKER_CONFIG="+dockerConfig,
			"PATH="+filepath.Dir(serverBin)+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s, pasted as it is, fails (%v):\n%s\n--- output:\n%s", b.where, err, b.script, out)
		}
		ran++
	}
	if ran < 5 {
		t.Fatalf("only %d blocks ran: the README's markers skip too much", ran)
	}
	v.Stop(t)
	testimage.AssertNoContainersOf(t, docker, v.ClusterID)
}

type readmeBlock struct {
	where     string // the README's line, for the failure
	script    string
	skip      string // why it is not run, if it is not
	vaultOnly string // why it runs only on Vault, if it does
	// kubernetes says which test runs it on the test Kubernetes node,
	// rather than this one.
	kubernetes string
}

var (
	notRun    = regexp.MustCompile(`^<!-- not run: (.+) -->$`)
	vaultOnly = regexp.MustCompile(`^<!-- vault only: (.+) -->$`)
	onNode    = regexp.MustCompile(`^<!-- kubernetes: (.+) -->$`)
)

// readmeShellBlocks are the README's ```shell blocks, in order.
func readmeShellBlocks(t *testing.T, path string) []readmeBlock {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks []readmeBlock
	var current *readmeBlock
	var lines []string
	previous := ""
	n := 0
	for scanner := bufio.NewScanner(f); scanner.Scan(); {
		n++
		line := scanner.Text()
		switch {
		case current == nil && line == "```shell":
			current = &readmeBlock{where: "README.md line " + strconv.Itoa(n)}
			if m := notRun.FindStringSubmatch(previous); m != nil {
				current.skip = m[1]
			}
			if m := vaultOnly.FindStringSubmatch(previous); m != nil {
				current.vaultOnly = m[1]
			}
			if m := onNode.FindStringSubmatch(previous); m != nil {
				current.kubernetes = m[1]
			}
			lines = nil
		case current != nil && line == "```":
			current.script = strings.Join(lines, "\n")
			blocks = append(blocks, *current)
			current = nil
		case current != nil:
			lines = append(lines, line)
		}
		if strings.TrimSpace(line) != "" {
			previous = strings.TrimSpace(line)
		}
	}
	if current != nil {
		t.Fatalf("%s: a block that never ends", current.where)
	}
	return blocks
}

// expectFailures turns each command the README says fails ("cmd   # fails:
// why", on one line) into one that fails the script if it succeeds.
func expectFailures(script string) string {
	var out []string
	for _, line := range strings.Split(script, "\n") {
		command, why, marked := strings.Cut(line, "# fails:")
		if !marked || strings.TrimSpace(command) == "" {
			out = append(out, line)
			continue
		}
		command = strings.TrimSpace(command)
		out = append(out, "if "+command+"; then echo 'the README says this fails ("+strings.ReplaceAll(strings.TrimSpace(why), "'", "")+"), and it did not' >&2; exit 1; fi")
	}
	return strings.Join(out, "\n")
}

// A command the README says fails must fail, and one it does not mark must
// not: the markers are what the test holds the README to.
func TestReadmeFailureMarkers(t *testing.T) {
	for script, ok := range map[string]bool{
		"false   # fails: it is refused": true,
		"true    # fails: it is refused": false,
		"true\nfalse":                    false,
	} {
		err := exec.Command("bash", "-euo", "pipefail", "-c", expectFailures(script)).Run()
		if (err == nil) != ok {
			t.Errorf("%q: error %v, want ok %v", script, err, ok)
		}
	}
}
