package acceptance

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
)

func TestListPagesThroughTheCLIAndHTTP(t *testing.T) {
	vaulttest.EachServer(t, testListPagesThroughTheCLIAndHTTP)
}

func testListPagesThroughTheCLIAndHTTP(t *testing.T, k vaulttest.Kind) {
	v := k.StartDev(t, "runtimes")
	for i := 0; i < 5; i++ {
		v.MustRun(t, "write", "-f", fmt.Sprintf("runtimes/catalog/container/rt-%d", i))
	}
	// The vault CLI: read with list=true sends the page as query parameters.
	var page struct {
		Data struct {
			Keys []string `json:"keys"`
		} `json:"data"`
	}
	v.MustJSON(t, &page, "read", "runtimes/catalog", "list=true", "after=rt-1", "limit=2")
	if !reflect.DeepEqual(page.Data.Keys, []string{"rt-2", "rt-3"}) {
		t.Fatalf("CLI page after rt-1, limit 2: %v", page.Data.Keys)
	}
	// HTTP, as curl sends it.
	status, body := httpDo(t, v, "LIST", "runtimes/catalog?after=rt-3&limit=10", "")
	if err := json.Unmarshal([]byte(body), &page); status != 200 || err != nil || !reflect.DeepEqual(page.Data.Keys, []string{"rt-4"}) {
		t.Fatalf("LIST after rt-3: %d %s", status, body)
	}
	if status, body := httpDo(t, v, "LIST", "runtimes/plugins/catalog?limit=0", ""); status != 400 {
		t.Fatalf("limit=0: %d %s", status, body)
	}
	// Without a page, everything, as before.
	var keys []string
	v.MustJSON(t, &keys, "list", "runtimes/catalog")
	if len(keys) != 5 {
		t.Fatalf("list: %v", keys)
	}
}
