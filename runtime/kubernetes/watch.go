package kubernetes

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// watch follows the pod from its creation until it is gone (or ctx ends),
// watching again from the last version seen when a watch ends early.
func (c *container) watch(ctx context.Context, gen int, name string, created *corev1.Pod) {
	pods := c.e.client.CoreV1().Pods(c.e.namespace)
	c.observe(gen, created)
	version := created.ResourceVersion
	for ctx.Err() == nil {
		w, err := pods.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name, ResourceVersion: version})
		watched := err == nil
		if watched {
			var deleted bool
			version, deleted = c.drain(w, gen, name, version)
			w.Stop()
			if deleted {
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		// The watch ended or failed: what the pod is now, then watch again.
		pod, err := pods.Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			c.vanished(gen, nil)
			return
		case err == nil:
			c.observe(gen, pod)
			version = pod.ResourceVersion
		}
		if !watched || err != nil {
			// No watch (refused, the API server restarting): the pod is
			// asked about each second instead.
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// drain reads one watch to its end and returns the last version seen,
// and whether the pod was deleted.
func (c *container) drain(w watch.Interface, gen int, name, version string) (string, bool) {
	for ev := range w.ResultChan() {
		pod, ok := ev.Object.(*corev1.Pod)
		if !ok || pod.Name != name {
			if ev.Type == watch.Error {
				return "", false // too old a version, most likely: start from now
			}
			continue
		}
		switch ev.Type {
		case watch.Added, watch.Modified:
			c.observe(gen, pod)
			version = pod.ResourceVersion
		case watch.Deleted:
			c.vanished(gen, pod)
			return version, true
		}
	}
	return version, false
}

// observe takes in the pod as the cluster now says it is: waiters are
// woken, and the plugin container's end is published once.
func (c *container) observe(gen int, pod *corev1.Pod) {
	c.mu.Lock()
	if gen != c.gen {
		c.mu.Unlock()
		return
	}
	c.pod = pod
	close(c.change)
	c.change = make(chan struct{})
	once, discarded := c.exitOnce, c.discarded
	c.mu.Unlock()
	st := containerStatus(pod.Status.ContainerStatuses, pluginContainer)
	ended := st != nil && st.State.Terminated != nil
	if pod.DeletionTimestamp != nil && !discarded && !ended {
		// Being deleted while its plugin runs (by the host's stop, or from
		// outside): within its grace period it serves the requests in
		// flight, and the host sends no new ones. A pod deleted after its
		// plugin ended (as exited does) is not leaving: it is gone, and
		// its exit is the plugin's own.
		c.state.Leave()
	}
	if ended && !discarded {
		c.exited(once, st.State.Terminated)
	}
}

// exited publishes the plugin container's end once, then deletes the pod,
// as a Docker container that removes itself: a stopped plugin leaves
// nothing.
func (c *container) exited(once *sync.Once, t *corev1.ContainerStateTerminated) {
	once.Do(func() {
		c.log().Debug("plugin container ended", "pod", c.name, "code", t.ExitCode, "reason", t.Reason, "signal", t.Signal, "message", t.Message)
		code := int64(t.ExitCode)
		if t.Reason == "OOMKilled" {
			c.state.OOMKilled()
			// The kernel's OOM killer sends SIGKILL: 137, as runc's shim
			// reports it. gVisor's shim reports the sandbox it killed as 128,
			// which would read as an exit of the plugin's own.
			code = 128 + 9
		}
		go func() {
			c.state.PublishExit(code, nil, c.outputDone)
			if c.ID() != "" {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				c.e.deletePod(ctx, c.name, 0)
			}
		}()
	})
}

// vanished records the pod's deletion; last is its final state, when known.
func (c *container) vanished(gen int, last *corev1.Pod) {
	if last != nil {
		c.observe(gen, last)
	}
	c.mu.Lock()
	if gen != c.gen {
		c.mu.Unlock()
		return
	}
	gone, goneOnce, exitOnce, discarded := c.gone, c.goneOnce, c.exitOnce, c.discarded
	c.mu.Unlock()
	goneOnce.Do(func() { close(gone) })
	if discarded {
		return
	}
	go func() {
		// Deleted before its end was seen (its node gone, a forced delete):
		// there is no exit code to tell.
		time.Sleep(runtime.OutputGrace)
		exitOnce.Do(func() {
			c.closeOutput()
			c.state.PublishExit(-1, fmt.Errorf("the pod %s/%s was deleted before its plugin's end was seen: %w",
				c.e.namespace, c.name, runtime.ErrContainerGone), c.outputDone)
		})
	}()
}

// follow streams the plugin container's log (stdout and stderr merged) into
// go-plugin's pipes and the State's output, until the container ends. A
// stream that breaks while it runs (the kubelet or the API server
// restarting) is opened again from the last line read: the lines carry the
// kubelet's timestamps, which tell the lines read already.
func (c *container) follow(ctx context.Context) {
	defer c.closeOutput()
	s := &splitter{stdout: c.stdoutW, stderr: c.stderrW, output: c.state.Output(), stamped: true}
	said := false
	for last := false; ; {
		opts := &corev1.PodLogOptions{Container: pluginContainer, Follow: true, Timestamps: true}
		if !s.max.IsZero() {
			since := metav1.NewTime(s.since())
			opts.SinceTime = &since
		}
		stream, err := c.e.client.CoreV1().Pods(c.e.namespace).GetLogs(c.name, opts).Stream(ctx)
		if err == nil {
			s.read(stream)
			stream.Close()
			if s.unstamped != "" {
				// The kubelet's words in place of the log (its file not
				// there yet, or gone): asked again, and never taken for
				// the plugin's.
				c.log().Debug("the kubelet did not give the plugin's log", "pod", c.name, "said", s.unstamped)
				s.unstamped = ""
			}
		} else if !said {
			said = true
			fmt.Fprintf(c.stderrW, "reading the log of the pod %s/%s: %v\n", c.e.namespace, c.name, err)
		}
		if ctx.Err() != nil || last {
			return
		}
		// Once the container ended, one more read takes what a broken
		// stream left.
		last = c.ended()
		if !last {
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
}

// ended reports whether the plugin container has ended or the pod is gone.
func (c *container) ended() bool {
	c.mu.Lock()
	pod, gone := c.pod, c.gone
	c.mu.Unlock()
	select {
	case <-gone:
		return true
	default:
	}
	if pod == nil {
		return false
	}
	st := containerStatus(pod.Status.ContainerStatuses, pluginContainer)
	return st != nil && st.State.Terminated != nil
}

// handshakeLine is go-plugin's handshake line.
var handshakeLine = regexp.MustCompile(`^\d+\|\d+\|(unix|tcp)\|`)

// splitter sends the first handshake line to stdout and every other line
// to stderr (go-plugin logs them), and all to output: the pod's log merges
// the two streams, and go-plugin takes stdout's first line as the
// handshake. Each line's timestamp is taken off. The two streams are
// stamped apart, so a line may come after a later-stamped one: a log asked
// again from since() skips the lines it had by their stamp and text, not
// by their time alone. With stamped set, the log was asked with timestamps,
// and what has none is the kubelet's, not the plugin's (unstamped keeps it).
type splitter struct {
	stdout, stderr, output io.Writer
	stamped                bool
	handshook              bool
	max                    time.Time            // the latest stamp read
	seen                   map[string]time.Time // the lines read since since(), with their stamps
	unstamped              string
}

// since is where a log asked again starts: a second before the latest
// line's second (the API takes whole seconds).
func (s *splitter) since() time.Time { return s.max.Truncate(time.Second).Add(-time.Second) }

func (s *splitter) read(r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			s.line(line)
		}
		if err != nil {
			return
		}
	}
}

func (s *splitter) line(line string) {
	stamp, rest, _ := strings.Cut(line, " ")
	switch at, err := time.Parse(time.RFC3339Nano, stamp); {
	case err == nil:
		if _, ok := s.seen[line]; ok {
			return
		}
		if s.seen == nil {
			s.seen = map[string]time.Time{}
		}
		s.seen[line] = at
		if at.After(s.max) {
			second := s.max.Truncate(time.Second)
			s.max = at
			if s.max.Truncate(time.Second) != second {
				for l, t := range s.seen {
					if t.Before(s.since()) {
						delete(s.seen, l)
					}
				}
			}
		}
		line = rest
	case s.stamped:
		s.unstamped += line
		return
	}
	s.output.Write([]byte(line))
	if !s.handshook && handshakeLine.MatchString(line) {
		s.handshook = true
		s.stdout.Write([]byte(line))
	} else {
		s.stderr.Write([]byte(line))
	}
}
