package hosting

// A container its engine takes away (a pod deleted from outside): a new
// one takes over before the old one stops, so that no request fails and
// none is sent twice.

// replaceLeaving has the mounts that c serves replace it at once, as its
// engine starts taking it away: they serve on in a new container whether
// or not a request comes, and the old one ends well within its grace
// period. One after the other: the first starts a container that the
// others of a multiplexed plugin then share, rather than each start one.
func (h *Host) replaceLeaving(c *container) {
	h.mu.Lock()
	var handles []*handle
	for id, name := range h.containers.users(c) {
		if hd := h.handles[name]; hd != nil && hd.id == id {
			handles = append(handles, hd)
		}
	}
	h.mu.Unlock()
	h.track(func() {
		for _, hd := range handles {
			hd.replaceIfLeaving()
		}
	})
}

// track runs fn in the background, where Close waits for it, unless the
// host is closing (then it reports false and runs nothing).
func (h *Host) track(fn func()) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.replaced.Add(1)
	go func() {
		defer h.replaced.Done()
		fn()
	}()
	return true
}

// replaceLocked starts a new container for the mount whose container its
// engine is taking away (a pod being deleted from outside, its grace period
// running), and only then stops the old one, away from the lock, once its
// requests in flight are done: the requests that come meanwhile wait for
// the new one, so none fails and none is sent twice. Those in flight have
// their whole request limit, not the stop timeout: nothing else waits on
// them. It is no crash: the crash-loop rule does not count it. hd.mu is
// held.
func (hd *handle) replaceLocked() error {
	old := hd.run
	hd.run = nil
	hd.restarts++
	hd.hist.restarted(CauseReplaced)
	hd.host.cfg.Logger.Info("replacing a hosted mount's container: its engine is taking it away", "mount", hd.name, "container", old.container.plugin.ID())
	err := hd.startLocked()
	stop := func() { old.stop(hd.host.containers, hd.id, false, hd.host.cfg.RequestTimeout) }
	if !hd.host.track(stop) {
		stop() // the host is closing: its Close waits for no one else
	}
	return err
}

// replaceIfLeaving replaces the mount's container if its engine is taking
// it away and no request did so first.
func (hd *handle) replaceIfLeaving() {
	hd.mu.Lock()
	defer hd.mu.Unlock()
	if hd.leavingLocked() && !hd.removed {
		if err := hd.replaceLocked(); err != nil {
			hd.host.cfg.Logger.Error("replacing a hosted mount's container", "mount", hd.name, "error", err)
		}
	}
}
