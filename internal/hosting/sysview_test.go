package hosting

import (
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

type countingView struct {
	logical.StaticSystemView
	asked int
}

func (v *countingView) DefaultLeaseTTL() time.Duration { v.asked++; return v.DefaultLeaseTTLVal }

func TestCachedTTLsAskVaultOncePerPeriod(t *testing.T) {
	v := &countingView{StaticSystemView: logical.StaticSystemView{DefaultLeaseTTLVal: time.Hour, MaxLeaseTTLVal: 2 * time.Hour}}
	c := &cachedTTLs{SystemView: v}
	for i := 0; i < 100; i++ {
		if c.DefaultLeaseTTL() != time.Hour || c.MaxLeaseTTL() != 2*time.Hour {
			t.Fatal("wrong TTLs")
		}
	}
	if v.asked != 1 {
		t.Fatalf("asked Vault %d times", v.asked)
	}
	c.fetched = time.Now().Add(-2 * ttlCacheFor) // a tune is seen after the period
	v.DefaultLeaseTTLVal = time.Minute
	if c.DefaultLeaseTTL() != time.Minute || v.asked != 2 {
		t.Fatalf("after the period: %v, asked %d", c.DefaultLeaseTTL(), v.asked)
	}
}
