package docker

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/stdcopy"
	hclog "github.com/hashicorp/go-hclog"
	acl "github.com/joshlf/go-acl"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// instance runs one plugin container for go-plugin (runner.Runner)
// through the Docker Engine API, and fills in its runtime.State.
type instance struct {
	engine *Engine
	api    API
	spec   runtime.Spec
	run    *RunConfig
	state  *runtime.State

	id     string
	stdout io.ReadCloser
	stderr io.ReadCloser
	// removed is closed when the engine has removed the container (or
	// waiting for that failed).
	removed chan struct{}
	// outputDone is closed when the container's output stream has ended.
	outputDone chan struct{}
	// podman is set when the engine is a Podman service (checkOCIRuntime).
	podman bool
	// oom watches the engine's oom events for the container (oom.go).
	oom oomWatch
}

var _ runtime.Container = (*instance)(nil)

// newContainer prepares the container rc describes; nothing touches the
// engine until Start.
func newContainer(e *Engine, api API, spec runtime.Spec, rc *RunConfig) *instance {
	if spec.Logger == nil {
		spec.Logger = hclog.NewNullLogger()
	}
	return &instance{
		engine: e, api: api, spec: spec, run: rc, state: runtime.NewState(spec),
		removed: make(chan struct{}), outputDone: make(chan struct{}),
	}
}

func (r *instance) State() *runtime.State { return r.state }

// Usage is the container's stats, once it exists.
func (r *instance) Usage() runtime.UsageSource {
	if r.id == "" {
		return nil
	}
	return stats{r.api, r.id}
}

// Start checks the image, creates the container, attaches to its output and
// starts it. A container that was created but could not start is removed.
func (r *instance) Start(ctx context.Context) error {
	if r.spec.Runtime.Rootless {
		if err := setRootlessACL(r.spec.Host.SocketDir); err != nil {
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
	case <-r.state.Abandoned():
		return runtime.ErrStartAbandoned
	default:
	}
	began := time.Now()
	created, err := r.api.ContainerCreate(ctx, r.run.Config, r.run.HostConfig, r.run.NetworkingConfig, nil, "")
	r.state.Created = time.Since(began)
	if err != nil {
		return r.explainCreateError(ctx, err)
	}
	r.id = created.ID
	r.state.SetID(r.id)
	r.oom.watch(r.api, r.state, r.id, r.podman)

	// Attach and wait before starting: the container removes itself when it
	// exits, so output and exit code must be caught from the first instant.
	attached, err := r.api.ContainerAttach(ctx, r.id, container.AttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		r.remove()
		id := runtime.Short(r.id)
		r.id = "" // gone, and never waited for
		r.state.SetID("")
		if strings.Contains(err.Error(), "received 409") {
			// Podman sets the container up with its OCI runtime when it is
			// attached to, so what the runtime refuses (an executable not in
			// the image, say) surfaces here, as a conflict without a reason.
			return fmt.Errorf("%w (%s): the engine could not set up container %s to attach to it (%v): "+
				"the OCI runtime refused it; its reason is in the engine's log", runtime.ErrStartRefused, r.what(), id, err)
		}
		return fmt.Errorf("attaching to container %s: %w", id, err)
	}
	// The exit code comes from next-exit: Podman answers a wait for the
	// removal of an auto-removed container with 0, whatever its exit code.
	// The removal is waited for apart, so that Kill leaves nothing behind.
	waitC, waitErrC := r.api.ContainerWait(context.Background(), r.id, container.WaitConditionNextExit)
	go r.awaitExit(waitC, waitErrC)
	removedC, removedErrC := r.api.ContainerWait(context.Background(), r.id, container.WaitConditionRemoved)
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
		_, err := stdcopy.StdCopy(io.MultiWriter(r.state.Output(), stdoutW), io.MultiWriter(r.state.Output(), stderrW), attached.Reader)
		stdoutW.CloseWithError(err)
		stderrW.CloseWithError(err)
	}()

	began = time.Now()
	err = r.api.ContainerStart(ctx, r.id, container.StartOptions{})
	r.state.Started = time.Since(began)
	if err != nil {
		r.remove()
		return r.state.Refused(r.explainStartError(ctx, err))
	}
	r.spec.Logger.Debug("started plugin container", "id", runtime.Short(r.id), "image", r.run.Config.Image, "runtime", r.run.HostConfig.Runtime)
	r.state.StopIfAbandoned(func() { r.Kill(context.Background()) })
	return nil
}

// waitUntil waits, from the wait already asked for (waitC, errC), until
// the container reaches cond. A wait that the engine cuts short (its
// service stopped or restarted, the connection dropped) says nothing of
// the container, which may live on: Podman's do, held by conmon, and go on
// serving through their socket. So it is asked again, with a backoff, until
// the engine answers it, says the container is gone, or Kill gives up.
func (r *instance) waitUntil(cond container.WaitCondition, waitC <-chan container.WaitResponse, errC <-chan error) (container.WaitResponse, error) {
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
			case <-r.state.GivenUp():
				return container.WaitResponse{}, err
			case <-time.After(backoff):
			}
		}
		backoff = min(2*backoff, 2*time.Second)
		waitC, errC = r.api.ContainerWait(context.Background(), r.id, cond)
	}
}

func (r *instance) awaitExit(waitC <-chan container.WaitResponse, errC <-chan error) {
	exit, err := r.waitUntil(container.WaitConditionNextExit, waitC, errC)
	r.state.PublishExit(exit.StatusCode, err, r.outputDone)
}

// Wait waits for the container to end; a non-zero exit code is an error.
func (r *instance) Wait(ctx context.Context) error { return r.state.Wait(ctx) }

// Kill stops the container and waits until the engine has removed it, so a
// caller never leaves a container behind.
func (r *instance) Kill(ctx context.Context) error {
	r.state.GiveUp()
	if r.id == "" {
		return nil
	}
	r.state.SampleMemoryBeforeStop(r.Usage())
	timeout := 5
	err := r.api.ContainerStop(ctx, r.id, container.StopOptions{Timeout: &timeout})
	if err != nil && !errdefs.IsNotFound(err) && !strings.Contains(strings.ToLower(err.Error()), "is already in progress") {
		r.remove()
		return fmt.Errorf("stopping container %s: %w", runtime.Short(r.id), err)
	}
	r.AwaitRemoval(30 * time.Second)
	return nil
}

// AwaitRemoval waits until the engine has removed the container (it removes
// itself on exit), force-removing it after timeout.
func (r *instance) AwaitRemoval(timeout time.Duration) {
	if r.id == "" {
		return
	}
	select {
	case <-r.removed:
	case <-time.After(timeout):
		r.remove()
		r.state.GiveUp()
		return
	}
	// Removed, so exited: the exit's report (code and output) follows at
	// once, or never (Podman does not answer a next-exit wait for a container
	// that never ran). The report itself waits up to outputGrace for the
	// last output, from the exit, which came before the removal: a little
	// more than that here, or the two timers race.
	select {
	case <-r.state.Done():
	case <-time.After(runtime.OutputGrace + 500*time.Millisecond):
	}
}

// remove force-removes the container, for the paths where AutoRemove will
// not: it never started, or it would not stop.
func (r *instance) remove() {
	r.oom.stopWatch()
	if r.id == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := r.api.ContainerRemove(ctx, r.id, container.RemoveOptions{Force: true})
	if err != nil && !errdefs.IsNotFound(err) && !strings.Contains(err.Error(), "already in progress") {
		r.spec.Logger.Error("removing plugin container", "id", runtime.Short(r.id), "error", err)
	}
}

func (r *instance) Stdout() io.ReadCloser { return r.stdout }
func (r *instance) Stderr() io.ReadCloser { return r.stderr }
func (r *instance) Name() string          { return r.spec.Plugin.TaggedImage() }
func (r *instance) ID() string            { return r.state.ID() }

// Diagnose is appended by go-plugin to its own start errors.
func (r *instance) Diagnose(context.Context) string {
	var b strings.Builder
	fmt.Fprintf(&b, "image %s, OCI runtime %s, container %s", r.run.Config.Image, r.run.HostConfig.Runtime, runtime.Short(r.id))
	if done, code := r.state.Exited(); done {
		fmt.Fprintf(&b, ", exited with code %d", code)
	}
	if out := r.state.LastOutput(); out != "" {
		b.WriteString("; last output:\n" + out)
	}
	return b.String()
}

// PluginToHost maps the plugin's socket path to the host directory.
func (r *instance) PluginToHost(pluginNet, pluginAddr string) (string, string, error) {
	if path.Dir(pluginAddr) != runtime.PluginSocketDir {
		return "", "", fmt.Errorf("plugin address %s is not in %s: the plugin may need go-plugin v1.6.0 or later", pluginAddr, runtime.PluginSocketDir)
	}
	return pluginNet, path.Join(r.spec.Host.SocketDir, path.Base(pluginAddr)), nil
}

// HostToPlugin maps a host socket path to where the plugin sees it.
func (r *instance) HostToPlugin(hostNet, hostAddr string) (string, string, error) {
	if path.Dir(hostAddr) != r.spec.Host.SocketDir {
		return "", "", fmt.Errorf("host address %s is not in %s", hostAddr, r.spec.Host.SocketDir)
	}
	return hostNet, path.Join(runtime.PluginSocketDir, path.Base(hostAddr)), nil
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
