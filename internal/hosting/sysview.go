package hosting

import (
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// ttlCacheFor is how long a hosted plugin sees this mount's lease TTLs
// before asking Vault again: a tune of the mount reaches it within that.
const ttlCacheFor = time.Second

// cachedTTLs is the system view hosted plugins get: this mount's, with its
// default and maximum lease TTLs kept for ttlCacheFor. A plugin such as kv
// asks for the default TTL on every response that carries a secret, and
// from a hosted plugin each question crosses two gRPC hops (to this plugin,
// then to Vault): measured, it was the largest single cost of a hosted read.
type cachedTTLs struct {
	logical.SystemView

	mu                 sync.Mutex
	fetched            time.Time
	defaultTTL, maxTTL time.Duration
}

func (c *cachedTTLs) ttls() (time.Duration, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.fetched) > ttlCacheFor {
		c.defaultTTL, c.maxTTL = c.SystemView.DefaultLeaseTTL(), c.SystemView.MaxLeaseTTL()
		c.fetched = time.Now()
	}
	return c.defaultTTL, c.maxTTL
}

func (c *cachedTTLs) DefaultLeaseTTL() time.Duration {
	d, _ := c.ttls()
	return d
}

func (c *cachedTTLs) MaxLeaseTTL() time.Duration {
	_, m := c.ttls()
	return m
}
