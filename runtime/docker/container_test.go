package docker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/stdcopy"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// memEngine is an in-memory Engine: one container at a time, which prints
// output and exits with exitCode as soon as it starts, and removes itself
// (AutoRemove). For the runner's unit tests only; the integration tests run
// the real engine.
type memEngine struct {
	images         []image.Summary
	runtimes       []string
	defaultRuntime string
	createErr      error
	startErr       error
	output         string
	exitCode       int64
	// serves: the container runs until it is stopped, instead of exiting
	// once it has printed its output.
	serves bool
	listed []container.Summary
	// registry maps what a pull may ask for to the image ID it brings;
	// pullErr is the registry's refusal, in the progress stream; pullHangs
	// makes a pull wait until it is cancelled.
	registry  map[string]string
	pullErr   string
	pullHangs bool
	pulls     []image.PullOptions
	pulledRef []string
	untagged  []string

	mu      sync.Mutex
	created []string
	removed []string
	stopped []string
	waitC   chan container.WaitResponse // next-exit
	removeC chan container.WaitResponse // removed
	pipe    net.Conn
}

var _ API = (*memEngine)(nil)

func (e *memEngine) Close() error { return nil }

func (e *memEngine) ContainerStats(context.Context, string, bool) (container.StatsResponseReader, error) {
	return container.StatsResponseReader{}, errors.New("no stats in memory")
}

func (e *memEngine) Events(ctx context.Context, _ events.ListOptions) (<-chan events.Message, <-chan error) {
	errs := make(chan error, 1)
	go func() { <-ctx.Done(); errs <- ctx.Err() }()
	return make(chan events.Message), errs
}

func (e *memEngine) ImageList(context.Context, image.ListOptions) ([]image.Summary, error) {
	return e.images, nil
}

func (e *memEngine) ContainerCreate(context.Context, *container.Config, *container.HostConfig, *network.NetworkingConfig, *ocispec.Platform, string) (container.CreateResponse, error) {
	if e.createErr != nil {
		return container.CreateResponse{}, e.createErr
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.created = append(e.created, "c0ffee")
	e.waitC = make(chan container.WaitResponse, 1)
	e.removeC = make(chan container.WaitResponse, 1)
	return container.CreateResponse{ID: "c0ffee"}, nil
}

func (e *memEngine) ContainerAttach(context.Context, string, container.AttachOptions) (types.HijackedResponse, error) {
	ours, theirs := net.Pipe()
	e.pipe = theirs
	return types.HijackedResponse{Conn: ours, Reader: bufio.NewReader(ours)}, nil
}

func (e *memEngine) ContainerWait(_ context.Context, _ string, condition container.WaitCondition) (<-chan container.WaitResponse, <-chan error) {
	if condition == container.WaitConditionRemoved {
		return e.removeC, make(chan error)
	}
	return e.waitC, make(chan error)
}

func (e *memEngine) ContainerStart(_ context.Context, id string, _ container.StartOptions) error {
	if e.startErr != nil {
		return e.startErr
	}
	go func() {
		stdcopy.NewStdWriter(e.pipe, stdcopy.Stdout).Write([]byte(e.output))
		if !e.serves {
			e.pipe.Close()
			e.exit(id)
		}
	}()
	return nil
}

func (e *memEngine) exit(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.removed) == 0 {
		e.removed = append(e.removed, id)
		e.waitC <- container.WaitResponse{StatusCode: e.exitCode}
		e.removeC <- container.WaitResponse{StatusCode: e.exitCode}
	}
}

func (e *memEngine) ContainerStop(_ context.Context, id string, _ container.StopOptions) error {
	e.mu.Lock()
	e.stopped = append(e.stopped, id)
	e.mu.Unlock()
	e.pipe.Close()
	e.exit(id)
	return nil
}

func (e *memEngine) ContainerRemove(_ context.Context, id string, _ container.RemoveOptions) error {
	if e.waitC == nil { // a listed container, not the one this engine runs
		e.mu.Lock()
		e.removed = append(e.removed, id)
		e.mu.Unlock()
		return nil
	}
	e.exit(id)
	return nil
}

func (e *memEngine) ImageInspect(_ context.Context, ref string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	for _, img := range e.images {
		if img.ID == ref || slices.Contains(img.RepoTags, ref) {
			return image.InspectResponse{ID: img.ID}, nil
		}
	}
	return image.InspectResponse{}, errdefs.NotFound(fmt.Errorf("No such image: %s", ref))
}

func (e *memEngine) ImagePull(ctx context.Context, ref string, options image.PullOptions) (io.ReadCloser, error) {
	e.pulls = append(e.pulls, options)
	e.pulledRef = append(e.pulledRef, ref)
	if e.pullHangs {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if e.pullErr != "" {
		return io.NopCloser(strings.NewReader(`{"status":"Pulling"}` + "\n" + `{"errorDetail":{"message":"` + e.pullErr + `"},"error":"` + e.pullErr + `"}` + "\n")), nil
	}
	id, ok := e.registry[ref]
	if !ok {
		return nil, errdefs.NotFound(fmt.Errorf("manifest for %s not found: manifest unknown", ref))
	}
	e.images = append(e.images, image.Summary{ID: id, RepoTags: []string{ref}})
	return io.NopCloser(strings.NewReader(`{"status":"Downloaded newer image for ` + ref + `"}` + "\n")), nil
}

func (e *memEngine) ImageRemove(_ context.Context, ref string, _ image.RemoveOptions) ([]image.DeleteResponse, error) {
	e.untagged = append(e.untagged, ref)
	return []image.DeleteResponse{{Untagged: ref}}, nil
}

func (e *memEngine) ServerVersion(context.Context) (types.Version, error) {
	return types.Version{Components: []types.ComponentVersion{{Name: "Engine"}}}, nil
}

func (e *memEngine) Info(context.Context) (system.Info, error) {
	info := system.Info{DefaultRuntime: e.defaultRuntime, Runtimes: map[string]system.RuntimeWithStatus{}}
	for _, name := range e.runtimes {
		info.Runtimes[name] = system.RuntimeWithStatus{}
	}
	return info, nil
}

const (
	memImageID = "sha256:" + "ab" + "abababababababababababababababababababababababababababababababab"
	otherID    = "sha256:" + "cd" + "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"
)

func memRunner(e *memEngine, sha string) *instance {
	p := testPlugin()
	p.SHA256 = sha
	c, err := With(e, "").Container(runtime.Spec{Plugin: p, Runtime: runtime.Runtime{OCIRuntime: "nope"}, Host: testHost(), Hardening: runtime.DefaultHardening()})
	if err != nil {
		panic(err)
	}
	return c.(*instance)
}

func TestRunnerFailuresSayWhy(t *testing.T) {
	present := []image.Summary{{ID: memImageID}}
	for _, tc := range []struct {
		name    string
		engine  *memEngine
		sha     string
		is      error
		says    string
		created bool
	}{
		{"unknown OCI runtime", &memEngine{images: present, runtimes: []string{"runsc", "runc"},
			createErr: errors.New("Error response from daemon: Unknown runtime specified nope")}, "",
			runtime.ErrUnknownOCIRuntime, `unknown OCI runtime: the Docker Engine has no OCI runtime "nope" (it has: runc, runsc); register it in /etc/docker/daemon.json or change the plugin runtime's oci_runtime`, false},
		{"missing image", &memEngine{}, "", runtime.ErrImageMissing,
			"missing image: no image example/kv:1.2.3 on the engine at unix:///var/run/docker.sock (its pull_policy is never: build or load it there, or register a pull_policy of missing)", false},
		{"SHA256 mismatch", &memEngine{images: []image.Summary{{ID: otherID}}}, memImageID, runtime.ErrSHA256Mismatch,
			"SHA256 mismatch: image example/kv:1.2.3 is " + otherID + ", not the registered sha256 " + memImageID, false},
		{"start refused", &memEngine{images: present, startErr: errors.New("OCI runtime create failed: exec: \"/kv\": no such file")}, "",
			runtime.ErrStartRefused, `the engine refused the container (image example/kv:1.2.3, OCI runtime nope, command ["/bin/kv"]): OCI runtime create failed: exec: "/kv": no such file`, true},
		{"engine failed", &memEngine{images: present, startErr: errors.New("connection reset by peer")}, "", nil,
			"starting the plugin container (image example/kv:1.2.3, OCI runtime nope): connection reset by peer", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := memRunner(tc.engine, tc.sha).Start(context.Background())
			if err == nil || (tc.is != nil && !errors.Is(err, tc.is)) || err.Error() != tc.says {
				t.Fatalf("error %v, want %q (is %v)", err, tc.says, tc.is)
			}
			if tc.created != (len(tc.engine.created) == 1) {
				t.Fatalf("created %v", tc.engine.created)
			}
			// Whatever was created was removed again.
			if len(tc.engine.removed) != len(tc.engine.created) {
				t.Fatalf("created %v, removed %v", tc.engine.created, tc.engine.removed)
			}
		})
	}
}

func TestRunnerExitReportsCodeAndOutput(t *testing.T) {
	e := &memEngine{images: []image.Summary{{ID: memImageID}}, exitCode: 2,
		output: "starting\nflag provided but not defined: -x\nUsage of /plugin:\n"}
	r := memRunner(e, memImageID)
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	go func() { // go-plugin reads the plugin's stdout
		buf := make([]byte, 1024)
		for {
			if _, err := r.Stdout().Read(buf); err != nil {
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Wait(ctx); !errors.Is(err, runtime.ErrContainerExited) || err.Error() != "plugin container exited with code 2" {
		t.Fatalf("Wait = %v", err)
	}
	// go-plugin's own complaint is replaced by what the container said.
	err := r.State().Failure(errors.New("Unrecognized remote plugin message: starting"))
	want := "plugin container exited with code 2 before the plugin handshake; last output:\nstarting\nflag provided but not defined: -x\nUsage of /plugin:"
	if !errors.Is(err, runtime.ErrContainerExited) || err.Error() != want {
		t.Fatalf("Failure = %q, want %q", err, want)
	}
	if done, code := r.State().Exited(); !done || code != 2 {
		t.Fatalf("Exited = %v %d", done, code)
	}
}

func TestRunnerKillStopsAndWaitsForRemoval(t *testing.T) {
	e := &memEngine{images: []image.Summary{{ID: memImageID}}, serves: true}
	r := memRunner(e, "")
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if done, _ := r.State().Exited(); done {
		t.Fatal("a serving container exited before Kill")
	}
	if err := r.Kill(context.Background()); err != nil {
		t.Fatal(err)
	}
	if strings.Join(e.stopped, ",") != "c0ffee" || strings.Join(e.removed, ",") != "c0ffee" {
		t.Fatalf("removed %v", e.removed)
	}
	if done, _ := r.State().Exited(); !done {
		t.Fatal("Kill returned before the container was gone")
	}
}

func (e *memEngine) ContainerList(context.Context, container.ListOptions) ([]container.Summary, error) {
	return e.listed, nil
}

func TestReapOrphansRemovesOnlyDeadOwners(t *testing.T) {
	e := &memEngine{listed: []container.Summary{
		{ID: "live", Labels: map[string]string{runtime.LabelOwner: runtime.Owner()}},
		{ID: "dead", Labels: map[string]string{runtime.LabelOwner: "999999999:1"}},
		{ID: "dead-here", Labels: map[string]string{runtime.LabelOwner: "999999998:1", runtime.LabelOwnerBoot: runtime.OwnerBoot()}},
		{ID: "elsewhere", Labels: map[string]string{runtime.LabelOwner: "999999997:1", runtime.LabelOwnerBoot: "another-machine"}},
		{ID: "unlabelled", Labels: map[string]string{}},
	}}
	removed, err := With(e, "").ReapOrphans(context.Background(), "cluster")
	if err != nil || strings.Join(removed, ",") != "dead,dead-here" || strings.Join(e.removed, ",") != "dead,dead-here" {
		t.Fatalf("removed %v (%v)", removed, err)
	}
}
