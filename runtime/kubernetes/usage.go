package kubernetes

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime/kubernetes/internal/wire"
)

// podUsage is the plugin container's figures, as its carrier reads them in
// the container's cgroup (carrier/stats.go) and streams them, a sample a
// second: a cluster's metrics API is optional (metrics-server), and the
// kubelet's summary needs nodes/proxy, a permission over the whole node.
type podUsage struct{ c *container }

// Usage is the pod's figures, from its carrier.
func (c *container) Usage() runtime.UsageSource { return podUsage{c} }

// endSeen bounds the wait for the pod's watch to tell the plugin
// container's end, once its carrier's stream ended: the carrier goes first.
var endSeen = 2 * time.Second

// FollowUsage reads the carrier's samples until ctx ends (nil) or the
// stream does: runtime.ErrContainerGone once the plugin container ended.
func (u podUsage) FollowUsage(ctx context.Context, each func(runtime.Usage)) error {
	err := u.read(ctx, func(s wire.Stats) bool { each(usageOf(s)); return true })
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// SampleUsage is the carrier's first sample.
func (u podUsage) SampleUsage(ctx context.Context) (runtime.Usage, error) {
	var got *runtime.Usage
	err := u.read(ctx, func(s wire.Stats) bool { g := usageOf(s); got = &g; return false })
	if got == nil && err == nil {
		err = fmt.Errorf("no figures from the carrier of the pod %s/%s: %w", u.c.e.namespace, u.c.name, ctx.Err())
	}
	if err != nil {
		return runtime.Usage{}, err
	}
	return *got, nil
}

// errNotThisPod is a carrier that answered at the pod's IP for another pod.
var errNotThisPod = errors.New("another pod's carrier answered at its IP")

// read asks the carrier for samples and passes each to more until it says
// to stop or ctx ends (nil), or the stream ends (why).
func (u podUsage) read(ctx context.Context, more func(wire.Stats) bool) error {
	c := u.c
	if c.ended() {
		return fmt.Errorf("%w: the plugin container of the pod %s/%s ended", runtime.ErrContainerGone, c.e.namespace, c.name)
	}
	c.mu.Lock()
	ip := c.podIP
	c.mu.Unlock()
	if ip == "" {
		return fmt.Errorf("the pod %s/%s has no IP yet", c.e.namespace, c.name)
	}
	conn, err := c.dialCarrier(ctx, ip, wire.StatsRequest, time.Now().Add(tunnelWait))
	if err != nil {
		return u.gone(ctx, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	r := bufio.NewReaderSize(conn, 1024)
	for {
		// A sample comes each wire.StatsInterval: one long overdue is a
		// carrier or network that stopped answering.
		conn.SetReadDeadline(time.Now().Add(5 * wire.StatsInterval))
		line, err := r.ReadSlice('\n')
		if err != nil {
			return u.gone(ctx, fmt.Errorf("reading the figures from the carrier of the pod %s/%s: %w", c.e.namespace, c.name, err))
		}
		var s wire.Stats
		if err := json.Unmarshal(line, &s); err != nil {
			return fmt.Errorf("the carrier of the pod %s/%s sent figures that do not read: %w", c.e.namespace, c.name, err)
		}
		if s.Pod != "" && s.Pod != c.name {
			// The pod's IP is another pod's: this one is gone.
			return fmt.Errorf("%w: %w: the pod %s/%s (%s is the pod %s's now)", runtime.ErrContainerGone, errNotThisPod, c.e.namespace, c.name, ip, s.Pod)
		}
		if !more(s) {
			return nil
		}
	}
}

// gone marks err runtime.ErrContainerGone once the plugin container ended:
// its carrier ends the stream first, so the pod's watch is given endSeen
// to tell it.
func (u podUsage) gone(ctx context.Context, err error) error {
	limit := time.NewTimer(endSeen)
	defer limit.Stop()
	for {
		u.c.mu.Lock()
		change := u.c.change // closed at the next pod the watch sees
		u.c.mu.Unlock()
		if u.c.ended() {
			return fmt.Errorf("%w: %w", runtime.ErrContainerGone, err)
		}
		select {
		case <-change:
		case <-limit.C:
			return err
		case <-ctx.Done():
			return err
		}
	}
}

func usageOf(s wire.Stats) runtime.Usage {
	return runtime.Usage{MemoryBytes: s.MemoryBytes, MemoryLimitBytes: s.MemoryLimitBytes, CPUSeconds: s.CPUSeconds, Pids: s.Pids, Missing: s.Missing}
}
