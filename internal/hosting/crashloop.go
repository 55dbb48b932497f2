package hosting

import (
	"context"
	"fmt"
	"time"
)

// The crash-loop rule. A plugin crashed when it did not start (for its own
// fault: an engine that does not answer is not the plugin's) or died
// within settleTime of starting. After crashLoopCrashes crashes in a row
// the mount is failed: requests are refused with the last cause, and a
// start is tried again after a wait that doubles from failedRetryFirst to
// failedRetryMax, so a mount recovers by itself once the cause is gone. A
// plugin that dies after running well (a container stopped or killed out
// of band, its engine restarted) did not crash: it is restarted, and the
// count starts again.
const (
	settleTime       = 10 * time.Second
	crashLoopCrashes = 3
	failedRetryFirst = 10 * time.Second
	failedRetryMax   = 5 * time.Minute
)

// crashLoop counts a mount's crashes; the handle's lock guards it.
type crashLoop struct {
	crashes   int    // in a row
	lastCause string // the last crash's, or the last death's, cause
	retryAt   time.Time
	backoff   time.Duration
}

// died records that the plugin was found gone after running for uptime,
// and reports whether the mount is now failed.
func (c *crashLoop) died(uptime time.Duration, cause string) bool {
	c.lastCause = cause
	if uptime >= settleTime {
		c.crashes, c.backoff = 0, 0
		return false
	}
	return c.crashed(cause)
}

// crashed records a crash, and reports whether the mount is now failed.
func (c *crashLoop) crashed(cause string) bool {
	c.lastCause = cause
	c.crashes++
	if c.crashes < crashLoopCrashes {
		return false
	}
	c.backoff = min(max(2*c.backoff, failedRetryFirst), failedRetryMax)
	c.retryAt = time.Now().Add(c.backoff)
	return true
}

// mayRetry reports whether a failed mount's wait is over; the next start
// is then its one try: a crash fails it again, for twice as long.
func (c *crashLoop) mayRetry() bool {
	if time.Now().Before(c.retryAt) {
		return false
	}
	c.crashes = crashLoopCrashes - 1
	return true
}

// reset forgets the crashes: an operator changed or reloaded the mount.
func (c *crashLoop) reset() { *c = crashLoop{} }

// reason is a failed mount's reason.
func (c *crashLoop) reason() string {
	return fmt.Sprintf("its plugin crashed %d times in a row (it did not start, or died within %s of starting); last: %s",
		c.crashes, settleTime, c.lastCause)
}

// sleepCtx waits for d, or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// requestKilled says how a plugin that died during a request may have
// been killed by it: it went past its memory limit, or panicked (a bug on
// the request's path). Empty for any other death (docker kill or stop, an
// engine going down, an exit of its own): the request may be sent again.
func requestKilled(p Plugin) string {
	switch {
	case p.MemoryKilled():
		return "took the plugin past its memory limit"
	case p.Panicked():
		return "made the plugin panic"
	}
	return ""
}
