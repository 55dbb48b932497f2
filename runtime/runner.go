package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/stdcopy"
	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin/runner"
	acl "github.com/joshlf/go-acl"
)

// Errors a caller can tell apart with errors.Is.
var (
	ErrImageMissing      = errors.New("missing image")
	ErrSHA256Mismatch    = errors.New("SHA256 mismatch")
	ErrUnknownOCIRuntime = errors.New("unknown OCI runtime")
	ErrContainerExited   = errors.New("plugin container exited")
	// ErrStartRefused is the engine or OCI runtime refusing the container
	// for what it was asked (a limit beyond the host, a missing executable,
	// an invalid cgroup): the registration's or the runtime's fault.
	ErrStartRefused = errors.New("the engine refused the container")
)

// logTailLines is how many of the container's last output lines a failure
// report quotes.
const logTailLines = 20

// Runner runs one plugin container for go-plugin (runner.Runner) through
// the Docker Engine API.
type Runner struct {
	engine    Engine
	logger    hclog.Logger
	plugin    Plugin
	run       *RunConfig
	socketDir string
	rootless  bool

	id     string
	stdout io.ReadCloser
	stderr io.ReadCloser
	tail   *lineTail
	exited chan struct{} // closed when the container has exited and its output is read
	// removed is closed when the engine has removed the container (or
	// waiting for that failed).
	removed chan struct{}
	// outputDone is closed when the container's output stream has ended.
	outputDone chan struct{}
	// killed is closed by giveUp (Kill, Stop, a removal not seen in
	// time): waits cut short by the engine are not asked again after that.
	killed   chan struct{}
	killOnce sync.Once
	// abandoned is closed when the start is given up (abandon);
	// handshakeDone when go-plugin's handshake completed (connected).
	abandoned     chan struct{}
	abandonOnce   sync.Once
	handshakeDone chan struct{}
	// memoryAtStop is the memory a container stopped before its handshake
	// was using then, under a memory limit (0: not sampled).
	memoryAtStop atomic.Uint64
	exit         container.WaitResponse
	exitedAt     time.Time // when the exit was seen
	waitErr      error
	// startErr is the engine's reason when it refused to start the
	// container: it says more than the exit code (127) that comes with it.
	startErr error
	// handshook is set once go-plugin's handshake completed.
	handshook bool
	// podman is set when the engine is a Podman service (checkOCIRuntime).
	podman bool
	// oom watches the engine's oom events for the container (oom.go).
	oom oomWatch
	// reasons are the exit's readings, by code, once made (exitReason).
	reasonsMu sync.Mutex
	reasons   map[int64]settledExit

	// Auth gives the credentials of a registry, or nil; PullTimeout bounds
	// a pull (DefaultPullTimeout when 0). Pulled is how long a pull took.
	Auth        func(registry string) *RegistryAuth
	PullTimeout time.Duration
	Pulled      time.Duration

	// EngineAddress is the engine's address as the runtime names it ("" for
	// the environment's Docker Engine), for messages.
	EngineAddress string

	// Created and Started are how long ContainerCreate and ContainerStart took.
	Created, Started time.Duration
}

var _ runner.Runner = (*Runner)(nil)

// NewRunner prepares a runner for the container rc describes; nothing
// touches the engine until Start.
func NewRunner(engine Engine, logger hclog.Logger, p Plugin, rc *RunConfig, socketDir string, rootless bool) *Runner {
	return &Runner{
		engine: engine, logger: logger, plugin: p, run: rc, socketDir: socketDir, rootless: rootless,
		tail: newLineTail(logTailLines), exited: make(chan struct{}), removed: make(chan struct{}), outputDone: make(chan struct{}),
		killed: make(chan struct{}), abandoned: make(chan struct{}), handshakeDone: make(chan struct{}),
	}
}

// abandon gives the start up: a container not created yet never is, and
// one waiting for its handshake is stopped.
func (r *Runner) abandon() { r.abandonOnce.Do(func() { close(r.abandoned) }) }

// connected records that go-plugin's handshake completed: abandon no
// longer applies.
func (r *Runner) connected() { close(r.handshakeDone) }

// Start checks the image, creates the container, attaches to its output and
// starts it. A container that was created but could not start is removed.
func (r *Runner) Start(ctx context.Context) error {
	if r.rootless {
		if err := setRootlessACL(r.socketDir); err != nil {
			return err
		}
	}
	if err := r.checkOCIRuntime(ctx); err != nil {
		return err
	}
	if err := r.checkImage(ctx); err != nil {
		return err
	}

	select {
	case <-r.abandoned:
		return ErrStartAbandoned
	default:
	}
	began := time.Now()
	created, err := r.engine.ContainerCreate(ctx, r.run.Config, r.run.HostConfig, r.run.NetworkingConfig, nil, "")
	r.Created = time.Since(began)
	if err != nil {
		return r.explainCreateError(ctx, err)
	}
	r.id = created.ID
	r.oom.watch(r.engine, r.id, r.podman)

	// Attach and wait before starting: the container removes itself when it
	// exits, so output and exit code must be caught from the first instant.
	attached, err := r.engine.ContainerAttach(ctx, r.id, container.AttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		r.remove()
		id := short(r.id)
		r.id = "" // gone, and never waited for
		if strings.Contains(err.Error(), "received 409") {
			// Podman sets the container up with its OCI runtime when it is
			// attached to, so what the runtime refuses (an executable not in
			// the image, say) surfaces here, as a conflict without a reason.
			return fmt.Errorf("%w (%s): the engine could not set up container %s to attach to it (%v): "+
				"the OCI runtime refused it; its reason is in the engine's log", ErrStartRefused, r.what(), id, err)
		}
		return fmt.Errorf("attaching to container %s: %w", id, err)
	}
	// The exit code comes from next-exit: Podman answers a wait for the
	// removal of an auto-removed container with 0, whatever its exit code.
	// The removal is waited for apart, so that Kill leaves nothing behind.
	waitC, waitErrC := r.engine.ContainerWait(context.Background(), r.id, container.WaitConditionNextExit)
	go r.awaitExit(waitC, waitErrC)
	removedC, removedErrC := r.engine.ContainerWait(context.Background(), r.id, container.WaitConditionRemoved)
	go func() {
		defer close(r.removed)
		r.waitUntil(container.WaitConditionRemoved, removedC, removedErrC)
		r.oom.stopWatch()
	}()

	stdoutR, stdoutW := io.Pipe()
	stderrR, stderrW := io.Pipe()
	r.stdout, r.stderr = stdoutR, stderrR
	go func() {
		defer close(r.outputDone)
		defer attached.Close()
		// The tail first: it must hold the last lines even when nobody reads
		// the pipes any more.
		_, err := stdcopy.StdCopy(io.MultiWriter(r.tail, stdoutW), io.MultiWriter(r.tail, stderrW), attached.Reader)
		stdoutW.CloseWithError(err)
		stderrW.CloseWithError(err)
	}()

	began = time.Now()
	err = r.engine.ContainerStart(ctx, r.id, container.StartOptions{})
	r.Started = time.Since(began)
	if err != nil {
		r.remove()
		r.startErr = r.explainStartError(ctx, err)
		return r.startErr
	}
	r.logger.Debug("started plugin container", "id", short(r.id), "image", r.run.Config.Image, "runtime", r.run.HostConfig.Runtime)
	go func() {
		select {
		case <-r.abandoned:
			r.Kill(context.Background())
		case <-r.handshakeDone:
		case <-r.exited:
		}
	}()
	return nil
}

// outputGrace bounds how long an exit waits for the last of the output.
const outputGrace = 2 * time.Second

// waitUntil waits, from the wait already asked for (waitC, errC), until
// the container reaches cond. A wait that the engine cuts short (its
// service stopped or restarted, the connection dropped) says nothing of
// the container, which may live on: Podman's do, held by conmon, and go on
// serving through their socket. So it is asked again, with a backoff, until
// the engine answers it, says the container is gone, or Kill gives up.
func (r *Runner) waitUntil(cond container.WaitCondition, waitC <-chan container.WaitResponse, errC <-chan error) (container.WaitResponse, error) {
	backoff := 100 * time.Millisecond
	for {
		select {
		case resp := <-waitC:
			return resp, nil
		case err := <-errC:
			if errdefs.IsNotFound(err) {
				return container.WaitResponse{}, err
			}
			select {
			case <-r.killed:
				return container.WaitResponse{}, err
			case <-time.After(backoff):
			}
		}
		backoff = min(2*backoff, 2*time.Second)
		waitC, errC = r.engine.ContainerWait(context.Background(), r.id, cond)
	}
}

func (r *Runner) awaitExit(waitC <-chan container.WaitResponse, errC <-chan error) {
	defer close(r.exited)
	r.exit, r.waitErr = r.waitUntil(container.WaitConditionNextExit, waitC, errC)
	r.exitedAt = time.Now()
	// The exit can be reported before the last output is read: a failure
	// report quotes it, so wait for the stream's end (briefly).
	select {
	case <-r.outputDone:
	case <-time.After(outputGrace):
	}
}

// Exited reports whether the container has ended, and its exit code.
func (r *Runner) Exited() (bool, int64) {
	select {
	case <-r.exited:
		return true, r.exit.StatusCode
	default:
		return false, 0
	}
}

// Wait waits for the container to end; a non-zero exit code is an error.
func (r *Runner) Wait(ctx context.Context) error {
	select {
	case <-r.exited:
	case <-ctx.Done():
		return ctx.Err()
	}
	if r.waitErr != nil {
		return r.waitErr
	}
	if r.exit.StatusCode != 0 {
		return fmt.Errorf("%w with code %d", ErrContainerExited, r.exit.StatusCode)
	}
	return nil
}

// Kill stops the container and waits until the engine has removed it, so a
// caller never leaves a container behind.
func (r *Runner) Kill(ctx context.Context) error {
	r.giveUp()
	if r.id == "" {
		return nil
	}
	r.sampleMemoryBeforeStop()
	timeout := 5
	err := r.engine.ContainerStop(ctx, r.id, container.StopOptions{Timeout: &timeout})
	if err != nil && !errdefs.IsNotFound(err) && !strings.Contains(strings.ToLower(err.Error()), "is already in progress") {
		r.remove()
		return fmt.Errorf("stopping container %s: %w", short(r.id), err)
	}
	r.awaitRemoval(30 * time.Second)
	return nil
}

// giveUp ends the waits that an engine cut short, asked again meanwhile:
// the container is being killed, or was given up on. It may be called more
// than once.
func (r *Runner) giveUp() { r.killOnce.Do(func() { close(r.killed) }) }

// awaitRemoval waits until the engine has removed the container (it removes
// itself on exit), force-removing it after timeout.
func (r *Runner) awaitRemoval(timeout time.Duration) {
	if r.id == "" {
		return
	}
	select {
	case <-r.removed:
	case <-time.After(timeout):
		r.remove()
		r.giveUp()
		return
	}
	// Removed, so exited: the exit's report (code and output) follows at
	// once, or never (Podman does not answer a next-exit wait for a container
	// that never ran). The report itself waits up to outputGrace for the
	// last output, from the exit, which came before the removal: a little
	// more than that here, or the two timers race.
	select {
	case <-r.exited:
	case <-time.After(outputGrace + 500*time.Millisecond):
	}
}

// remove force-removes the container, for the paths where AutoRemove will
// not: it never started, or it would not stop.
func (r *Runner) remove() {
	r.oom.stopWatch()
	if r.id == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := r.engine.ContainerRemove(ctx, r.id, container.RemoveOptions{Force: true})
	if err != nil && !errdefs.IsNotFound(err) && !strings.Contains(err.Error(), "already in progress") {
		r.logger.Error("removing plugin container", "id", short(r.id), "error", err)
	}
}

func (r *Runner) Stdout() io.ReadCloser { return r.stdout }
func (r *Runner) Stderr() io.ReadCloser { return r.stderr }
func (r *Runner) Name() string          { return r.plugin.TaggedImage() }
func (r *Runner) ID() string            { return r.id }

// Diagnose is appended by go-plugin to its own start errors.
func (r *Runner) Diagnose(context.Context) string {
	var b strings.Builder
	fmt.Fprintf(&b, "image %s, OCI runtime %s, container %s", r.run.Config.Image, r.run.HostConfig.Runtime, short(r.id))
	if done, code := r.Exited(); done {
		fmt.Fprintf(&b, ", exited with code %d", code)
	}
	if out := r.tail.String(); out != "" {
		b.WriteString("; last output:\n" + out)
	}
	return b.String()
}

// PluginToHost maps the plugin's socket path to the host directory.
func (r *Runner) PluginToHost(pluginNet, pluginAddr string) (string, string, error) {
	if path.Dir(pluginAddr) != PluginSocketDir {
		return "", "", fmt.Errorf("plugin address %s is not in %s: the plugin may need go-plugin v1.6.0 or later", pluginAddr, PluginSocketDir)
	}
	return pluginNet, path.Join(r.socketDir, path.Base(pluginAddr)), nil
}

// HostToPlugin maps a host socket path to where the plugin sees it.
func (r *Runner) HostToPlugin(hostNet, hostAddr string) (string, string, error) {
	if path.Dir(hostAddr) != r.socketDir {
		return "", "", fmt.Errorf("host address %s is not in %s", hostAddr, r.socketDir)
	}
	return hostNet, path.Join(PluginSocketDir, path.Base(hostAddr)), nil
}

// setRootlessACL lets a non-root container user of rootless Docker reach the
// sockets: a default ACL giving this process's user read-write on new files.
func setRootlessACL(dir string) error {
	a := acl.FromUnix(0o660)
	a = append(a,
		acl.Entry{Tag: acl.TagUser, Qualifier: strconv.Itoa(os.Geteuid()), Perms: 0o006},
		acl.Entry{Tag: acl.TagMask, Perms: 0o006})
	if err := acl.SetDefault(dir, a); err != nil {
		return fmt.Errorf("setting the default ACL on the rootless socket directory %s: %w", dir, err)
	}
	return nil
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
