package runtimecatalog

import (
	"context"
	"fmt"
	"net/http"
	"sort"

	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/reqerr"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// Plugin returns the identified plugin, nil when there is none.
func (c *catalog) Plugin(ctx context.Context, id pluginID) (*pluginEntry, error) {
	if err := c.ensure(ctx); err != nil {
		return nil, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.plugins[id], nil
}

// Plugins returns every plugin, sorted by type and name. The slice is
// shared: callers must not modify it.
func (c *catalog) Plugins(ctx context.Context) ([]*pluginEntry, error) {
	if err := c.ensure(ctx); err != nil {
		return nil, err
	}
	c.mu.RLock()
	sorted := c.pluginsSorted
	c.mu.RUnlock()
	if sorted != nil {
		return sorted, nil
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pluginsSorted == nil {
		c.pluginsSorted = make([]*pluginEntry, 0, len(c.plugins))
		for _, p := range c.plugins {
			c.pluginsSorted = append(c.pluginsSorted, p)
		}
		sort.Slice(c.pluginsSorted, func(i, j int) bool {
			return c.pluginsSorted[i].id().String() < c.pluginsSorted[j].id().String()
		})
	}
	return c.pluginsSorted, nil
}

// ToRun is a plugin and its runtime as they are now, as the runtime package
// runs them: a runtime edited since registration applies at the next start.
// A missing plugin is a 404.
func (c *catalog) ToRun(ctx context.Context, id pluginID) (runtime.Plugin, runtime.Runtime, error) {
	if err := c.ensure(ctx); err != nil {
		return runtime.Plugin{}, runtime.Runtime{}, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	p := c.plugins[id]
	if p == nil {
		return runtime.Plugin{}, runtime.Runtime{}, logical.CodedError(http.StatusNotFound, "no plugin "+id.String())
	}
	if p.Runtime == "" {
		return p.Plugin, runtime.Runtime{}, nil
	}
	r := c.runtimes[p.Runtime]
	if r == nil { // writes forbid it; only storage edited behind the plugin's back gets here
		return runtime.Plugin{}, runtime.Runtime{}, fmt.Errorf("plugin %s references runtime %q, which does not exist", id, p.Runtime)
	}
	return p.Plugin, r.Runtime, nil
}

// WritePlugin validates and stores the plugin that build derives from the
// current one (nil when there is none). It holds the plugin's lock, and the
// lock of the runtime it references while checking that the runtime exists
// and storing: a runtime deletion takes that lock too, so no plugin can come
// to reference a runtime that is being deleted. Locks are always taken
// plugin first, then runtime; runtime writers never take a plugin lock.
func (c *catalog) WritePlugin(ctx context.Context, id pluginID, build func(existing *pluginEntry) (*pluginEntry, error)) (*pluginEntry, error) {
	lock := locksutil.LockForKey(c.pluginLocks, id.String())
	lock.Lock()
	defer lock.Unlock()

	existing, err := c.Plugin(ctx, id)
	if err != nil {
		return nil, err
	}
	p, err := build(existing)
	if err != nil {
		return nil, err
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	if p.Runtime != "" {
		runtimeLock := locksutil.LockForKey(c.runtimeLocks, p.Runtime)
		runtimeLock.Lock()
		defer runtimeLock.Unlock()
		if r, err := c.Runtime(ctx, p.Runtime); err != nil {
			return nil, err
		} else if r == nil {
			return nil, reqerr.BadRequestf("plugin runtime %q does not exist", p.Runtime)
		}
	}
	se, err := logical.StorageEntryJSON(pluginKey(id), storedPlugin{pluginEntryFormat, p})
	if err != nil {
		return nil, fmt.Errorf("encoding plugin %q: %w", id, err)
	}
	if err := c.storage.Put(ctx, se); err != nil {
		return nil, fmt.Errorf("storing plugin %q: %w", id, err)
	}
	c.mu.Lock()
	c.setPluginLocked(p)
	c.mu.Unlock()
	return p, nil
}

// DeletePlugin removes a plugin; deleting one that is not there succeeds.
func (c *catalog) DeletePlugin(ctx context.Context, id pluginID) error {
	lock := locksutil.LockForKey(c.pluginLocks, id.String())
	lock.Lock()
	defer lock.Unlock()

	if p, err := c.Plugin(ctx, id); err != nil || p == nil {
		return err
	}
	// Mount writes hold this plugin's lock too, so the mounts seen here are
	// all there are until the plugin is gone.
	if users := c.mountsOf(id); len(users) > 0 {
		return reqerr.BadRequestf("unable to delete plugin %s. Hosted mounts=%v are using it.", id, users)
	}
	if err := c.storage.Delete(ctx, pluginKey(id)); err != nil {
		return fmt.Errorf("deleting plugin %q: %w", id, err)
	}
	c.mu.Lock()
	c.removePluginLocked(id)
	c.mu.Unlock()
	return nil
}

func (c *catalog) setPluginLocked(p *pluginEntry) {
	id := p.id()
	c.removePluginLocked(id)
	c.plugins[id] = p
	if p.Runtime != "" {
		if c.users[p.Runtime] == nil {
			c.users[p.Runtime] = map[pluginID]struct{}{}
		}
		c.users[p.Runtime][id] = struct{}{}
	}
	c.changedLocked()
}

func (c *catalog) removePluginLocked(id pluginID) {
	old := c.plugins[id]
	if old == nil {
		return
	}
	delete(c.plugins, id)
	if users := c.users[old.Runtime]; users != nil {
		delete(users, id)
		if len(users) == 0 {
			delete(c.users, old.Runtime)
		}
	}
	c.changedLocked()
}
