package runtimecatalog

import (
	"context"
	"fmt"
	"sort"

	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/reqerr"
)

// Runtime returns the named runtime, nil when there is none.
func (c *catalog) Runtime(ctx context.Context, name string) (*runtimeEntry, error) {
	if err := c.ensure(ctx); err != nil {
		return nil, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.runtimes[name], nil
}

// Runtimes returns every runtime by name and the generation they are of.
// The slice is shared: callers must not modify it.
func (c *catalog) Runtimes(ctx context.Context) ([]*runtimeEntry, uint64, error) {
	if err := c.ensure(ctx); err != nil {
		return nil, 0, err
	}
	c.mu.RLock()
	sorted, gen := c.runtimesSorted, c.generation
	c.mu.RUnlock()
	if sorted != nil {
		return sorted, gen, nil
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.runtimesSorted == nil {
		c.runtimesSorted = make([]*runtimeEntry, 0, len(c.runtimes))
		for _, r := range c.runtimes {
			c.runtimesSorted = append(c.runtimesSorted, r)
		}
		sort.Slice(c.runtimesSorted, func(i, j int) bool { return c.runtimesSorted[i].Name < c.runtimesSorted[j].Name })
	}
	return c.runtimesSorted, c.generation, nil
}

// PluginsUsing returns the plugins that reference a runtime, sorted by
// name, then type.
func (c *catalog) PluginsUsing(ctx context.Context, runtimeName string) ([]pluginID, error) {
	if err := c.ensure(ctx); err != nil {
		return nil, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.usersLocked(runtimeName), nil
}

func (c *catalog) usersLocked(runtimeName string) []pluginID {
	ids := make([]pluginID, 0, len(c.users[runtimeName]))
	for id := range c.users[runtimeName] {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		if ids[i].Name != ids[j].Name {
			return ids[i].Name < ids[j].Name
		}
		return ids[i].Type < ids[j].Type
	})
	return ids
}

// WriteRuntime validates and stores the runtime that build derives from the
// current one (nil when there is none), holding the name's lock throughout
// so no other write to the name comes between. A runtime that breaks a rule
// is a request error and changes nothing.
func (c *catalog) WriteRuntime(ctx context.Context, name string, build func(existing *runtimeEntry) (*runtimeEntry, error)) (*runtimeEntry, error) {
	lock := locksutil.LockForKey(c.runtimeLocks, name)
	lock.Lock()
	defer lock.Unlock()

	existing, err := c.Runtime(ctx, name)
	if err != nil {
		return nil, err
	}
	r, err := build(existing)
	if err != nil {
		return nil, err
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	se, err := logical.StorageEntryJSON(runtimeKey(r.Name), storedRuntime{runtimeEntryFormat, r})
	if err != nil {
		return nil, fmt.Errorf("encoding runtime %q: %w", r.Name, err)
	}
	if err := c.storage.Put(ctx, se); err != nil {
		return nil, fmt.Errorf("storing runtime %q: %w", r.Name, err)
	}
	c.mu.Lock()
	c.runtimes[r.Name] = r
	c.changedLocked()
	c.mu.Unlock()
	return r, nil
}

// DeleteRuntime removes a runtime; deleting one that is not there succeeds.
// A runtime that plugins reference is not deleted: the error names them.
func (c *catalog) DeleteRuntime(ctx context.Context, name string) error {
	lock := locksutil.LockForKey(c.runtimeLocks, name)
	lock.Lock()
	defer lock.Unlock()

	if err := c.ensure(ctx); err != nil {
		return err
	}
	c.mu.RLock()
	exists, users := c.runtimes[name] != nil, c.usersLocked(name)
	c.mu.RUnlock()
	if !exists {
		return nil
	}
	// Plugin writes hold this runtime's lock too, so the users seen here are
	// all there are until the runtime is gone.
	if len(users) > 0 {
		return reqerr.BadRequestf("unable to delete %q runtime. Registered plugins=%v are referencing it.", name, users)
	}
	if err := c.storage.Delete(ctx, runtimeKey(name)); err != nil {
		return fmt.Errorf("deleting runtime %q: %w", name, err)
	}
	c.mu.Lock()
	delete(c.runtimes, name)
	c.changedLocked()
	c.mu.Unlock()
	return nil
}
