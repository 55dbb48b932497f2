package runtimecatalog

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/hashicorp/vault/sdk/logical"
)

// Storage layout: every key this plugin writes, in the mount's storage.
// The catalog is the only owner of these keys, the host's included. Each
// entry is versioned JSON: format is bumped when the layout changes, so an
// older plugin refuses an entry it cannot read rather than silently
// dropping fields.
//
//	runtime/container/NAME   storedRuntime  {"format":1, runtimeEntry's fields}
//	plugin/TYPE/NAME         storedPlugin   {"format":1, pluginEntry's fields}
//	mount/NAME               storedMount    {"format":1, mountEntry's fields}
//	config                   storedSettings {"format":1, "compress_lists":...}
//	registry/ADDRESS         storedRegistry {"format":1, registryEntry's fields}
//	leases/UUID              a JSON number: the hosted mount's leases still out
//	published-paths          storedPublished {"format":1, "by_name":{NAME: "UUID\x02paths"}}: the special paths Vault last read
//	hosted/UUID/...          the hosted mount's own storage, as its plugin writes it
const (
	runtimeStoragePrefix = "runtime/" + runtimeTypeContainer + "/" // + name
	pluginStoragePrefix  = "plugin/"                               // + type/name
	mountStoragePrefix   = "mount/"                                // + name
	hostedDataPrefix     = "hosted/"                               // + uuid/: each hosted mount's own storage
	leasesPrefix         = "leases/"                               // + uuid: each hosted mount's lease count
	runtimeEntryFormat   = 1
	pluginEntryFormat    = 1
	mountEntryFormat     = 1
	settingsKey          = "config"
	settingsFormat       = 1
	registryPrefix       = "registry/" // + registry address: its credentials
	registryEntryFormat  = 1
	publishedPathsKey    = "published-paths"
	publishedPathsFormat = 1
)

// storedPublished are the hosted mounts' special paths as Vault last read
// them (hosting.Host.LoadPublished says why they are kept).
type storedPublished struct {
	Format int               `json:"format"`
	ByName map[string]string `json:"by_name"`
}

type storedSettings struct {
	Format int `json:"format"`
	*settingsEntry
}

func runtimeKey(name string) string    { return runtimeStoragePrefix + name }
func pluginKey(id pluginID) string     { return pluginStoragePrefix + id.String() }
func pluginTypePrefix(t string) string { return pluginStoragePrefix + t + "/" }
func mountKey(name string) string      { return mountStoragePrefix + name }

// mountOfKey is the hosted mount a storage key is the entry of.
func mountOfKey(key string) (string, bool) { return strings.CutPrefix(key, mountStoragePrefix) }
func hostedData(uuid string) string        { return hostedDataPrefix + uuid + "/" }
func leasesKey(uuid string) string         { return leasesPrefix + uuid }

type storedRegistry struct {
	Format int `json:"format"`
	*registryEntry
}

type storedRuntime struct {
	Format int `json:"format"`
	*runtimeEntry
}

type storedPlugin struct {
	Format int `json:"format"`
	*pluginEntry
}

type storedMount struct {
	Format int `json:"format"`
	*mountEntry
}

func decodeSettings(se *logical.StorageEntry, err error) (settingsEntry, error) {
	stored := storedSettings{settingsEntry: &settingsEntry{}}
	if ok, err := decodeStored(se, err, "configuration", &stored, &stored.Format, settingsFormat); !ok {
		return settingsEntry{}, err
	}
	return *stored.settingsEntry, nil
}

func decodeMount(se *logical.StorageEntry, err error) (*mountEntry, error) {
	stored := storedMount{mountEntry: &mountEntry{}}
	if ok, err := decodeStored(se, err, "hosted mount", &stored, &stored.Format, mountEntryFormat); !ok {
		return nil, err
	}
	return stored.mountEntry, nil
}

func decodeRuntime(se *logical.StorageEntry, err error) (*runtimeEntry, error) {
	stored := storedRuntime{runtimeEntry: &runtimeEntry{}}
	if ok, err := decodeStored(se, err, "runtime", &stored, &stored.Format, runtimeEntryFormat); !ok {
		return nil, err
	}
	return stored.runtimeEntry, nil
}

func decodePlugin(se *logical.StorageEntry, err error) (*pluginEntry, error) {
	stored := storedPlugin{pluginEntry: &pluginEntry{}}
	if ok, err := decodeStored(se, err, "plugin", &stored, &stored.Format, pluginEntryFormat); !ok {
		return nil, err
	}
	return stored.pluginEntry, nil
}

// decodeStored decodes a storage entry into v, whose format field is
// format; ok is false when there is no entry or it cannot be read.
func decodeStored(se *logical.StorageEntry, readErr error, kind string, v interface{}, format *int, want int) (ok bool, err error) {
	if readErr != nil {
		return false, fmt.Errorf("reading %s: %w", kind, readErr)
	}
	if se == nil {
		return false, nil
	}
	if err := json.Unmarshal(se.Value, v); err != nil {
		return false, fmt.Errorf("decoding %s %q: %w", kind, se.Key, err)
	}
	if *format != want {
		return false, fmt.Errorf("%s %q is stored in format %d; this plugin reads format %d", kind, se.Key, *format, want)
	}
	return true, nil
}

// listKeysUnder returns the full keys of the entries directly under prefix.
func listKeysUnder(ctx context.Context, s logical.Storage, prefix string) ([]string, error) {
	names, err := s.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(names))
	for _, name := range names {
		if !strings.HasSuffix(name, "/") {
			keys = append(keys, prefix+name)
		}
	}
	return keys, nil
}

// getAll reads keys with loadConcurrency reads at once; entries[i] is keys[i]
// (nil if it vanished meanwhile).
func getAll(ctx context.Context, s logical.Storage, keys []string) ([]*logical.StorageEntry, error) {
	entries := make([]*logical.StorageEntry, len(keys))
	errs := make([]error, len(keys))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < loadConcurrency && w < len(keys); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				entries[i], errs[i] = s.Get(ctx, keys[i])
			}
		}()
	}
	for i := range keys {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", keys[i], err)
		}
	}
	return entries, nil
}

// loadConcurrency is how many storage reads loading runs at once. For an
// external plugin each read is a gRPC call back into Vault: one at a time,
// a catalog of thousands of runtimes takes seconds to load.
const loadConcurrency = 16
