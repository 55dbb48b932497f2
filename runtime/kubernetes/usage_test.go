package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime/kubernetes/internal/wire"
)

// The pod's figures come from its carrier: the host asks with STATS and
// reads a sample a line until it is done; a carrier that stops sending, or
// goes, ends the stream, as gone once the plugin container ended.
func TestUsageFromTheCarrier(t *testing.T) {
	fc := startFakeCarrier(t)
	e, _ := fakeEngine(t)
	c := &container{e: e, spec: testSpec(), name: "rc-1-kv", podIP: "127.0.0.1", gone: make(chan struct{}), change: make(chan struct{})}

	sampled := make(chan error, 1)
	var got runtime.Usage
	go func() {
		var err error
		got, err = c.Usage().SampleUsage(context.Background())
		sampled <- err
	}()
	conn, _, line := fc.next(t)
	if line != wire.StatsRequest+"\n" {
		t.Fatalf("asked %q", line)
	}
	fmt.Fprintln(conn, `{"pod":"rc-1-kv","memory_bytes":5242880,"memory_limit_bytes":67108864,"cpu_seconds":1.5,"pids":9,"missing":["pids"]}`)
	if err := <-sampled; err != nil {
		t.Fatal(err)
	}
	if want := (runtime.Usage{MemoryBytes: 5 << 20, MemoryLimitBytes: 64 << 20, CPUSeconds: 1.5, Pids: 9, Missing: []string{runtime.FigurePids}}); !reflect.DeepEqual(got, want) {
		t.Fatalf("sample %+v, want %+v", got, want)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var seen []float64
	followed := make(chan error, 1)
	go func() {
		followed <- c.Usage().FollowUsage(ctx, func(u runtime.Usage) {
			mu.Lock()
			seen = append(seen, u.CPUSeconds)
			mu.Unlock()
		})
	}()
	conn, _, _ = fc.next(t)
	for i := 1; i <= 3; i++ {
		fmt.Fprintf(conn, "{\"cpu_seconds\":%d}\n", i)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-followed; err != nil || !reflect.DeepEqual(seen, []float64{1, 2, 3}) {
		t.Fatalf("followed %v, %v", seen, err)
	}

	// The carrier goes with the plugin's container, before the pod's watch
	// tells its end: gone, once it does.
	go func() { followed <- c.Usage().FollowUsage(context.Background(), func(runtime.Usage) {}) }()
	conn, _, _ = fc.next(t)
	conn.Close()
	time.Sleep(100 * time.Millisecond)
	c.mu.Lock() // as the pod's watch sees it (observe)
	c.pod = &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: pluginContainer,
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}}}}}}
	close(c.change)
	c.change = make(chan struct{})
	c.mu.Unlock()
	if err := <-followed; !errors.Is(err, runtime.ErrContainerGone) {
		t.Fatalf("after the container ended: %v", err)
	}
	// Once it has, the carrier is not asked again.
	if err := c.Usage().FollowUsage(context.Background(), func(runtime.Usage) {}); !errors.Is(err, runtime.ErrContainerGone) {
		t.Fatalf("asked after the end: %v", err)
	}
	c.mu.Lock()
	c.pod = nil
	c.mu.Unlock()

	// Another pod's carrier at the pod's IP (a new pod took it): gone.
	go func() { followed <- c.Usage().FollowUsage(context.Background(), func(runtime.Usage) {}) }()
	conn, _, _ = fc.next(t)
	fmt.Fprintln(conn, `{"pod":"rc-2-other","memory_bytes":1}`)
	if err := <-followed; !errors.Is(err, runtime.ErrContainerGone) || !errors.Is(err, errNotThisPod) {
		t.Fatalf("another pod's carrier: %v", err)
	}

	// The caller gave up: FollowUsage ends with nil, SampleUsage with why
	// it has nothing.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if err := c.Usage().FollowUsage(ctx, func(runtime.Usage) {}); err != nil {
		t.Fatalf("FollowUsage after its context ended: %v", err)
	}
	if _, err := c.Usage().SampleUsage(ctx); err == nil {
		t.Fatal("SampleUsage with no sample said nothing")
	}

	c.podIP = ""
	if _, err := c.Usage().SampleUsage(context.Background()); err == nil || !strings.Contains(err.Error(), "no IP") {
		t.Fatalf("no IP: %v", err)
	}
}

// The carrier's figure names are the runtime's, in its JSON and its
// constants (which its Missing says).
func TestStatsNamesAreTheFigures(t *testing.T) {
	b, _ := json.Marshal(wire.Stats{Missing: []string{"x"}})
	var m map[string]any
	json.Unmarshal(b, &m)
	var names []string
	for k := range m {
		if k != "missing" {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	figures := []string{runtime.FigureCPU, runtime.FigureMemory, runtime.FigureMemoryLimit, runtime.FigurePids}
	if want := sortedWith(figures, "pod"); !reflect.DeepEqual(names, want) {
		t.Fatalf("wire's JSON names %v, want %v", names, want)
	}
	if consts := []string{wire.FigureCPU, wire.FigureMemory, wire.FigureMemoryLimit, wire.FigurePids}; !reflect.DeepEqual(consts, figures) {
		t.Fatalf("wire's figure names %v, the runtime's %v", consts, figures)
	}
}

func sortedWith(list []string, more ...string) []string {
	out := append(append([]string{}, list...), more...)
	sort.Strings(out)
	return out
}
