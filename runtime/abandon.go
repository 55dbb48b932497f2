package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/go-plugin"
)

// A start abandoned when its context ends: the host closing (a seal).

// ErrStartAbandoned is a start given up because its context ended (the
// host is closing: Vault seals, unmounts or reloads): the container is
// stopped and removed in the background.
var ErrStartAbandoned = errors.New("the start was abandoned")

// abandonCleanupWait bounds how long an abandoned start waits for its
// container's removal before it returns.
const abandonCleanupWait = 10 * time.Second

// connect runs go-plugin's start and handshake, which take no context and
// wait up to the start timeout for a slow plugin: when ctx ends first, the
// start is abandoned at once, and the container stopped, which ends
// go-plugin's wait; the rest of the cleanup runs in the background. made
// is the runner and socket directory go-plugin made so far.
func (r *Running) connect(ctx context.Context, made func() (Container, string)) (plugin.ClientProtocol, error) {
	type result struct {
		rpc plugin.ClientProtocol
		err error
	}
	done := make(chan result, 1)
	go func() {
		rpc, err := r.client.Client()
		done <- result{rpc, err}
	}()
	select {
	case res := <-done:
		return res.rpc, res.err
	case <-ctx.Done():
	}
	cleaned := make(chan struct{})
	go func() {
		defer close(cleaned)
		for {
			// The runner exists once go-plugin has called the runner
			// function: abandoned, it stops its container, which ends the
			// handshake's wait.
			if c, _ := made(); c != nil {
				c.State().Abandon()
			}
			select {
			case <-done:
				r.client.Kill()
				if c, dir := made(); c != nil || dir != "" {
					if c != nil {
						c.Kill(context.Background())
					}
					os.RemoveAll(dir)
				}
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	// Waited for, briefly: the host closing (a seal) may be the last thing
	// this process does before Vault stops it, and a container left
	// running would wait for the next start's reaper. Stopping one that
	// has not handshaken takes a moment.
	select {
	case <-cleaned:
	case <-time.After(abandonCleanupWait):
	}
	if errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		return nil, fmt.Errorf("%w: the start did not complete in its time: %w", ErrStartAbandoned, context.Cause(ctx))
	}
	return nil, fmt.Errorf("%w: the host is closing: %w", ErrStartAbandoned, context.Cause(ctx))
}
