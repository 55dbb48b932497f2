package kubernetes

import (
	"context"
	"fmt"
	"time"
)

// How a plugin pod ends: killed, removed, abandoned before its handshake.

// abandonBeforeHandshake stops the pod when the start is given up before
// go-plugin's handshake completed: go-plugin would wait for the handshake
// to its own limit.
func (c *container) abandonBeforeHandshake() {
	select {
	case <-c.state.Abandoned():
		c.log().Debug("plugin pod stopped: its start was abandoned", "pod", c.name)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c.Kill(ctx)
	case <-c.state.HandshakeDone():
	case <-c.state.Done():
	}
}

// Kill deletes the pod and its NetworkPolicy and waits until it is gone.
func (c *container) Kill(ctx context.Context) error {
	if c.ID() == "" {
		return nil
	}
	if err := c.e.deletePod(ctx, c.name, stopGrace); err != nil {
		return err
	}
	return c.awaitGone(ctx, time.Minute)
}

// AwaitRemoval waits until the pod is gone (a pod whose plugin ended is
// deleted at once), deleting it by force after timeout.
func (c *container) AwaitRemoval(timeout time.Duration) {
	if c.ID() == "" {
		return
	}
	if c.awaitGone(context.Background(), timeout) == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.e.deletePod(ctx, c.name, 0)
	c.awaitGone(ctx, 30*time.Second)
}

func (c *container) awaitGone(ctx context.Context, timeout time.Duration) error {
	select {
	case <-c.goneCh():
		c.stopWatching()
		// What was made with the pod goes after it (deletePod), maybe not yet.
		return c.e.deleteCompanions(ctx, c.name)
	case <-time.After(timeout):
		return fmt.Errorf("the pod %s/%s was not gone within %s", c.e.namespace, c.name, timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}
