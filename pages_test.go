package runtimecatalog

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// Following pages, with every limit, lists every key exactly once, in order.
func TestPagesCoverEveryEntryOnceInOrder(t *testing.T) {
	b, s := newTestBackend(t)
	var runtimes []string
	for i := 0; i < 23; i++ {
		name := fmt.Sprintf("rt-%02d", (i*7)%23) // written out of order
		runtimes = append(runtimes, fmt.Sprintf("rt-%02d", i))
		mustDo(t, b, s, logical.UpdateOperation, "catalog/container/"+name, nil)
	}
	var secrets, all []string
	for i := 0; i < 7; i++ {
		for _, typ := range []string{"auth", "secret"} {
			mustDo(t, b, s, logical.UpdateOperation, fmt.Sprintf("plugins/catalog/%s/p%d", typ, i), pluginData(nil))
		}
		secrets = append(secrets, fmt.Sprintf("p%d", i))
	}
	for _, typ := range []string{"auth", "secret"} {
		for i := 0; i < 7; i++ {
			all = append(all, fmt.Sprintf("%s/p%d", typ, i))
		}
	}
	for _, tc := range []struct {
		path string
		data map[string]interface{}
		want []string
	}{
		{"catalog/", nil, runtimes},
		{"catalog/container/", nil, runtimes},
		{"plugins/catalog/", nil, all},
		{"plugins/catalog/", map[string]interface{}{"type": "secret"}, secrets},
		{"plugins/catalog/secret/", nil, secrets},
	} {
		for _, limit := range []int{1, 2, 5, 23, 100} {
			var got []string
			after := ""
			for pages := 0; ; pages++ {
				data := map[string]interface{}{"limit": fmt.Sprint(limit)}
				for k, v := range tc.data {
					data[k] = v
				}
				if after != "" {
					data["after"] = after
				}
				keys := listKeys(t, mustDo(t, b, s, logical.ListOperation, tc.path, data).Data)
				if len(keys) > limit {
					t.Fatalf("%s limit %d: a page of %d", tc.path, limit, len(keys))
				}
				if len(keys) == 0 || pages > 100 {
					break
				}
				got, after = append(got, keys...), keys[len(keys)-1]
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s %v limit %d: pages gave %v, want %v", tc.path, tc.data, limit, got, tc.want)
			}
		}
	}
	// after need not exist; without a limit the rest follows.
	keys := listKeys(t, mustDo(t, b, s, logical.ListOperation, "catalog/", map[string]interface{}{"after": "rt-10x"}).Data)
	if !reflect.DeepEqual(keys, runtimes[11:]) {
		t.Errorf("after rt-10x: %v", keys)
	}
	for _, limit := range []interface{}{"0", "-3", 0} {
		for _, path := range []string{"catalog/", "plugins/catalog/", "hosted/"} {
			if msg := errorOf(t, b, s, logical.ListOperation, path, map[string]interface{}{"limit": limit}); !strings.Contains(msg, "is not a positive number of keys") {
				t.Errorf("%s limit %v: %s", path, limit, msg)
			}
		}
	}
}
