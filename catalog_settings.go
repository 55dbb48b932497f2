package runtimecatalog

import (
	"context"
	"fmt"
	"math"
	"sort"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/reqerr"
)

// settingsEntry is the mount's own configuration.
type settingsEntry struct {
	// CompressLists lets lists answer with a gzip body to clients that ask
	// for one (Accept-Encoding), which the mount must pass through, and let
	// the Content-Encoding header back out of.
	CompressLists bool `json:"compress_lists"`
	// MaxHostedResponseBytes bounds each answer of a hosted plugin
	// (DefaultMaxHostedResponse when 0); it applies at a mount's next start.
	MaxHostedResponseBytes int64 `json:"max_hosted_response_bytes,omitempty"`
	// DisableHostedStorageCache reads hosted mounts' storage from Vault on
	// every Get, as before the cache (hostedCacheBytes); it applies at a
	// mount's next start.
	DisableHostedStorageCache bool `json:"disable_hosted_storage_cache"`
}

// hostedCacheBytes bounds the read-through cache of the hosted mounts'
// storage, all of a mount of ours together: a hosted kv's working set of a
// few thousand secrets fits, and a plugin that reads 100,000 keys costs this
// plugin no more than this.
const hostedCacheBytes = 32 << 20

// DefaultMaxHostedResponse is twice Vault's default max_request_size
// (32 MiB): whatever Vault let in can come back out, with its envelope, and
// a plugin that answers more cannot take this plugin's memory with it.
const DefaultMaxHostedResponse = 64 << 20

// maxHostedResponse is the bound in force.
func (s settingsEntry) maxHostedResponse() int64 {
	if s.MaxHostedResponseBytes == 0 {
		return DefaultMaxHostedResponse
	}
	return s.MaxHostedResponseBytes
}

// validate checks the settings' rules.
func (s settingsEntry) validate() error {
	if n := s.MaxHostedResponseBytes; n != 0 && (n < 1<<20 || n > math.MaxInt32) {
		return reqerr.BadRequestf("max_hosted_response_bytes is %d: it is at least 1048576 (1 MiB) and at most %d (gRPC's bound)", n, math.MaxInt32)
	}
	return nil
}

// Settings are the mount's configuration.
func (c *catalog) Settings(ctx context.Context) (settingsEntry, error) {
	if err := c.ensure(ctx); err != nil {
		return settingsEntry{}, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.settings, nil
}

// WriteSettings stores the mount's configuration.
func (c *catalog) WriteSettings(ctx context.Context, settings settingsEntry) error {
	if err := c.ensure(ctx); err != nil {
		return err
	}
	se, err := logical.StorageEntryJSON(settingsKey, storedSettings{settingsFormat, &settings})
	if err == nil {
		err = c.storage.Put(ctx, se)
	}
	if err != nil {
		return fmt.Errorf("storing the configuration: %w", err)
	}
	c.mu.Lock()
	c.settings = settings
	c.mu.Unlock()
	return nil
}

// Registry is the credentials stored for a registry, or nil. They are read
// from storage each time: a pull is rare, and a secret kept in memory only
// when needed is a secret less often in a core dump.
func (c *catalog) Registry(ctx context.Context, registry string) (*registryEntry, error) {
	stored := storedRegistry{registryEntry: &registryEntry{}}
	se, err := c.storage.Get(ctx, registryPrefix+registry)
	if ok, err := decodeStored(se, err, "registry credentials", &stored, &stored.Format, registryEntryFormat); !ok {
		return nil, err
	}
	return stored.registryEntry, nil
}

// Registries are the registries credentials are stored for, sorted.
func (c *catalog) Registries(ctx context.Context) ([]string, error) {
	keys, err := c.storage.List(ctx, registryPrefix)
	if err != nil {
		return nil, fmt.Errorf("listing registries: %w", err)
	}
	sort.Strings(keys)
	return keys, nil
}

// WriteRegistry validates and stores a registry's credentials.
func (c *catalog) WriteRegistry(ctx context.Context, r *registryEntry) error {
	if err := r.validate(); err != nil {
		return err
	}
	se, err := logical.StorageEntryJSON(registryPrefix+r.Registry, storedRegistry{registryEntryFormat, r})
	if err == nil {
		err = c.storage.Put(ctx, se)
	}
	if err != nil {
		return fmt.Errorf("storing the credentials of registry %s: %w", r.Registry, err)
	}
	return nil
}

// DeleteRegistry removes a registry's credentials.
func (c *catalog) DeleteRegistry(ctx context.Context, registry string) error {
	return c.storage.Delete(ctx, registryPrefix+registry)
}
