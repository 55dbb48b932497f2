package hosting

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sort"
	"sync"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// errClosing refuses a start while the host shuts down.
var errClosing = errors.New("the mount is shutting down")

// container is a running plugin container and the mounts it serves.
type container struct {
	key         string
	plugin      Plugin
	ociRuntime  string
	multiplexed bool
	// users are the mounts it serves, by UUID (a name deleted and created
	// again is another user while the old one leaves), to their names.
	users map[string]string
	// stopped is closed when it is stopped.
	stopped  chan struct{}
	stopOnce sync.Once
}

// stop ends its plugin and removes it.
func (c *container) stop(ctx context.Context) {
	c.stopOnce.Do(func() { close(c.stopped) })
	c.plugin.Stop(ctx)
}

// serves reports whether the container takes new requests: its plugin
// runs, and its engine is not taking it away.
func (c *container) serves() bool { return !c.plugin.Exited() && !c.leaving() }

// leaving: its engine is taking it away.
func (c *container) leaving() bool {
	select {
	case <-c.plugin.Leaving():
		return true
	default:
		return false
	}
}

// containers are the running containers by registration, reference-counted
// by the mounts they serve: mounts of the same multiplexed plugin with the
// same runtime settings share one, as Vault's own catalog shares one between
// mounts of an identical registration; a plugin that is not multiplexed
// gets one per mount.
type containers struct {
	start StartFunc
	// leaving is called once a container's engine starts taking it away,
	// unless it is stopped before.
	leaving func(*container)

	mu    sync.Mutex
	byKey map[string]*container
	// starting are the starts under way of registrations known to be
	// multiplexed, by key: closed when each ends. The mounts that come
	// meanwhile wait for it and share what it started, rather than each
	// start a container of its own (the mounts of a container being taken
	// away move together).
	starting map[string]chan struct{}
	closed   bool
}

func newContainers(start StartFunc, leaving func(*container)) *containers {
	return &containers{start: start, leaving: leaving, byKey: map[string]*container{}, starting: map[string]chan struct{}{}}
}

// watch calls cs.leaving when c's engine starts taking it away.
func (cs *containers) watch(c *container) {
	go func() {
		select {
		case <-c.plugin.Leaving():
			cs.leaving(c)
		case <-c.stopped:
		}
	}()
}

// registrationKey identifies what a container runs.
func registrationKey(p runtime.Plugin, r runtime.Runtime) string {
	encoded, _ := json.Marshal(struct {
		P runtime.Plugin
		R runtime.Runtime
	}{p, r})
	sum := sha256.Sum256(encoded)
	return hex.EncodeToString(sum[:])
}

// acquire returns a running container for the registration, starting one
// when none can be shared.
func (cs *containers) acquire(ctx context.Context, key, id, mount string, p runtime.Plugin, rt runtime.Runtime) (*container, error) {
	for {
		cs.mu.Lock()
		if cs.closed {
			cs.mu.Unlock()
			return nil, errClosing
		}
		c := cs.byKey[key]
		if c != nil && c.multiplexed && c.serves() {
			c.users[id] = mount
			cs.mu.Unlock()
			return c, nil
		}
		if wait := cs.starting[key]; wait != nil {
			cs.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if c != nil && c.multiplexed {
			done := make(chan struct{})
			cs.starting[key] = done
			defer func() {
				cs.mu.Lock()
				delete(cs.starting, key)
				cs.mu.Unlock()
				close(done)
			}()
		}
		cs.mu.Unlock()
		break
	}

	started, err := cs.start(ctx, p, rt, "hosted."+mount)
	if err != nil {
		return nil, err
	}
	multiplexed, err := started.Multiplexed(ctx)
	if err != nil {
		started.Stop(ctx)
		return nil, fmt.Errorf("asking plugin %s/%s whether it multiplexes: %w", p.Type, p.Name, err)
	}
	c := &container{key: key, plugin: started, ociRuntime: rt.EffectiveOCIRuntime(), multiplexed: multiplexed, users: map[string]string{id: mount},
		stopped: make(chan struct{})}
	if !multiplexed {
		c.key = key + "/" + id // one container per mount
	}

	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.closed {
		go started.Stop(context.Background())
		return nil, errClosing
	}
	if other := cs.byKey[c.key]; other != nil {
		if multiplexed && other.serves() { // another mount started one meanwhile: share it
			go started.Stop(context.Background())
			other.users[id] = mount
			return other, nil
		}
		if other.plugin.Exited() {
			go other.stop(context.Background()) // dead: its users move on as they notice
		}
		// One being taken away serves its requests in flight: its last
		// user's release stops it.
	}
	cs.byKey[c.key] = c
	cs.watch(c)
	return c, nil
}

// release drops a mount from its container, stopping the container when no
// mount is left on it.
func (cs *containers) release(ctx context.Context, c *container, id string) {
	cs.mu.Lock()
	delete(c.users, id)
	last := len(c.users) == 0
	if last && cs.byKey[c.key] == c {
		delete(cs.byKey, c.key)
	}
	cs.mu.Unlock()
	switch {
	case last && c.plugin.Exited():
		// Already dead: its cleanup need not hold up the restart.
		go c.stop(context.Background())
	case last:
		c.stop(ctx)
	}
}

// users are the mounts c serves, by UUID, to their names.
func (cs *containers) users(c *container) map[string]string {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return maps.Clone(c.users)
}

// others are the names of the mounts besides id that c serves, sorted.
func (cs *containers) others(c *container, id string) []string {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var names []string
	for other, name := range c.users {
		if other != id {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// close refuses new containers and stops every running one.
func (cs *containers) close(ctx context.Context) {
	cs.mu.Lock()
	cs.closed = true
	running := cs.byKey
	cs.byKey = map[string]*container{}
	cs.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range running {
		wg.Add(1)
		go func() { defer wg.Done(); c.stop(ctx) }()
	}
	wg.Wait()
}
