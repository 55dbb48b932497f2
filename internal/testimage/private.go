package testimage

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
	dockerengine "github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime/docker"
)

// PrivateEngine is an engine of one test's own, on a socket in a temp
// directory, that the test stops and starts again: an engine restart that
// no other test, sharing the machine's engines, is in the way of.
type PrivateEngine struct {
	Engine
	command []string
	env     []string
	dir     string // where it runs
	log     string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// PrivateDocker starts a Docker Engine of the test's own: its own data
// root, exec root, containerd and bridge, no iptables rules (the plugins
// run with no network). It is stopped, and its directory removed, when the test ends.
func PrivateDocker(t vaulttest.T) *PrivateEngine {
	t.Helper()
	Docker(t) // the machine's engine answers, or the test fails or skips as every Docker test does
	dir := vaulttest.ShortTempDir(t)
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "d.sock")
	p := &PrivateEngine{
		Engine: Engine{Name: "private docker/runc", OCIRuntime: "runc", Address: "unix://" + sock},
		command: []string{"dockerd", "--host=unix://" + sock, "--data-root=" + filepath.Join(dir, "data"),
			"--exec-root=" + filepath.Join(dir, "x"), "--pidfile=" + filepath.Join(dir, "pid"),
			"--config-file=" + filepath.Join(dir, "daemon.json"), "--bridge=" + privateBridge(t), "--iptables=false", "--ip-masq=false"},
		dir: dir, log: filepath.Join(dir, "log"),
	}
	p.run(t)
	return p
}

// privateBridge makes a network bridge for a private dockerd, removed when
// the test ends. Not --bridge=none: a dockerd without a bridge deletes
// docker0, which the machine's own dockerd runs its containers on.
func privateBridge(t vaulttest.T) string {
	t.Helper()
	name := fmt.Sprintf("rcb%d", os.Getpid()%100000)
	address := fmt.Sprintf("10.213.%d.1/24", os.Getpid()%250)
	for _, args := range [][]string{{"link", "add", "name", name, "type", "bridge"}, {"addr", "add", address, "dev", name}, {"link", "set", name, "up"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			exec.Command("ip", "link", "del", name).Run()
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", name).Run() })
	return name
}

// PrivatePodman starts a Podman service of the test's own, with the
// settings of scripts/start-podman.sh's runc service (whose storage, and
// so whose images, it shares). Its containers outlive it, as Podman's do:
// conmon, not the service, holds them.
func PrivatePodman(t vaulttest.T) *PrivateEngine {
	t.Helper()
	shared := os.Getenv(EnvPodmanRunc)
	if shared == "" {
		vaulttest.RequireReal(t, "the Podman services ($"+EnvPodmanRunc+")", "run `make test`, or eval $(sudo scripts/start-podman.sh)")
	}
	conf := filepath.Join(filepath.Dir(strings.TrimPrefix(shared, "unix://")), "containers-runc.conf")
	if _, err := os.Stat(conf); err != nil {
		t.Fatalf("the Podman settings of scripts/start-podman.sh: %v", err)
	}
	state := vaulttest.ShortTempDir(t)
	sock := filepath.Join(state, "p.sock")
	p := &PrivateEngine{
		Engine:  Engine{Name: "private podman/runc", Podman: true, OCIRuntime: "runc", Address: "unix://" + sock},
		command: []string{"podman", "system", "service", "--time=0", "unix://" + sock},
		env:     []string{"CONTAINERS_CONF=" + conf},
		dir:     "/", // a service in a directory later removed fails every container
		log:     filepath.Join(state, "log"),
	}
	p.run(t)
	return p
}

// run starts the engine and waits until it answers; the first run makes
// its client and its cleanup.
func (p *PrivateEngine) run(t vaulttest.T) {
	t.Helper()
	cmd := exec.Command(p.command[0], p.command[1:]...)
	cmd.Dir, cmd.Env = p.dir, append(os.Environ(), p.env...)
	log, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		t.Fatalf("starting %s: %v", p.Name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); log.Close(); close(exited) }()
	p.cmd, p.exited = cmd, exited
	if p.Client == nil {
		c, err := dockerengine.NewClient(p.Address)
		if err != nil {
			t.Fatal(err)
		}
		p.Client = c
		t.Cleanup(func() { p.Stop(t); c.Close() })
	}
	p.await(t)
}

// await waits up to a minute for the engine to answer.
func (p *PrivateEngine) await(t vaulttest.T) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := p.Client.Ping(ctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-p.exited:
			out, _ := os.ReadFile(p.log)
			t.Fatalf("%s exited while starting: %v\n%s", p.Name, err, out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not answer: %v", p.Name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Stop stops the engine as its service manager would (SIGTERM, then
// SIGKILL after 30 s) and waits for it to exit. Dockerd stops its
// containers on the way; Podman's live on.
func (p *PrivateEngine) Stop(t vaulttest.T) {
	t.Helper()
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
	p.cmd = nil
}

// Start starts the engine again, on the same socket and state.
func (p *PrivateEngine) Start(t vaulttest.T) {
	t.Helper()
	p.run(t)
}
