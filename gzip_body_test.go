package runtimecatalog

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestCRC32Combine(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for _, sizes := range [][2]int{{0, 0}, {1, 0}, {0, 1}, {3, 5}, {100, 1}, {17, 65536}, {1000, 2_000_000}} {
		a, b := make([]byte, sizes[0]), make([]byte, sizes[1])
		r.Read(a)
		r.Read(b)
		want := crc32.ChecksumIEEE(append(append([]byte(nil), a...), b...))
		if got := crc32Combine(crc32.ChecksumIEEE(a), crc32.ChecksumIEEE(b), int64(len(b))); got != want {
			t.Errorf("sizes %v: %08x, want %08x", sizes, got, want)
		}
	}
}

func TestGzipMemberDecodesToStartAndRest(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	for _, size := range []int{0, 1, 1000, 3_000_000} {
		rest := make([]byte, size)
		for i := range rest {
			rest[i] = "abcdefgh{}\":,0123"[r.Intn(17)]
		}
		g, err := compressRest(rest)
		if err != nil {
			t.Fatal(err)
		}
		for _, start := range []string{"", "x", `{"request_id":"5b9e…","data":`} {
			member := g.member([]byte(start))
			zr, err := gzip.NewReader(bytes.NewReader(member))
			if err != nil {
				t.Fatal(err)
			}
			zr.Multistream(false)
			got, err := io.ReadAll(zr) // checks the CRC and size in the trailer
			if err != nil {
				t.Fatalf("size %d start %q: %v", size, start, err)
			}
			if !bytes.Equal(got, append([]byte(start), rest...)) {
				t.Fatalf("size %d start %q: decoded %d bytes, not the body", size, start, len(got))
			}
		}
	}
}

func TestAcceptsGzip(t *testing.T) {
	for value, want := range map[string]bool{
		"gzip": true, "deflate, gzip, br, zstd": true, "gzip;q=0.5": true, "*": true, "GZIP": true,
		"gzip;q=0": false, "identity": false, "": false, "br": false, "gzip ; q=0.0": false,
	} {
		if got := acceptsGzip(map[string][]string{"Accept-Encoding": {value}}); got != want {
			t.Errorf("%q: %v, want %v", value, got, want)
		}
	}
	if acceptsGzip(nil) {
		t.Error("no header accepts gzip")
	}
}

// listBodies sends the same list request with and without gzip and returns
// both raw bodies (the gzip one decoded) and the gzip response's headers.
func listBodies(t *testing.T, b *backend, s logical.Storage, path, id string, headers map[string][]string) (plain, gunzipped []byte, resp *logical.Response) {
	t.Helper()
	raw := func(resp *logical.Response) []byte {
		body, err := base64.StdEncoding.DecodeString(resp.Data[logical.HTTPRawBody].(string))
		if err != nil {
			t.Fatal(err)
		}
		return body
	}
	req := func(h map[string][]string) *logical.Response {
		resp, err := b.HandleRequest(context.Background(), &logical.Request{ID: id, Operation: logical.ListOperation, Path: path, Storage: s, Headers: h})
		if err != nil || resp == nil {
			t.Fatalf("LIST %s: %v %v", path, resp, err)
		}
		return resp
	}
	plainResp := req(nil)
	if plainResp.Headers != nil || plainResp.Data[logical.HTTPRawBody] == nil {
		t.Fatalf("LIST %s without Accept-Encoding: %#v", path, plainResp)
	}
	resp = req(headers)
	if resp.Data[logical.HTTPRawBody] == nil {
		return raw(plainResp), nil, resp
	}
	body := raw(resp)
	if resp.Headers["Content-Encoding"] == nil {
		return raw(plainResp), body, resp
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	zr.Multistream(false)
	gunzipped, err = io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return raw(plainResp), gunzipped, resp
}

var acceptGzip = map[string][]string{"Accept-Encoding": {"gzip"}}

func TestCompressedListsOnlyWhenNegotiated(t *testing.T) {
	b, s := newTestBackend(t)
	// Refused without the header an untuned mount would show.
	if msg := errorOf(t, b, s, logical.UpdateOperation, "config", map[string]interface{}{"compress_lists": true}); !strings.Contains(msg,
		"run `vault secrets tune -passthrough-request-headers=Accept-Encoding -allowed-response-headers=Content-Encoding -allowed-response-headers=Vary") {
		t.Fatalf("enabling without Accept-Encoding: %s", msg)
	}
	// Configured off: plain even when asked.
	if _, gz, resp := listBodies(t, b, s, "catalog/", "id-1", acceptGzip); gz != nil && resp.Headers != nil {
		t.Fatal("a gzip body while compress_lists is off")
	}
	resp, err := b.HandleRequest(context.Background(), &logical.Request{Operation: logical.UpdateOperation, Path: "config",
		Storage: s, Headers: acceptGzip, Data: map[string]interface{}{"compress_lists": true}})
	if err != nil || resp.IsError() || resp.Data["compress_lists"] != true {
		t.Fatalf("enabling: %v %#v", err, resp)
	}

	for _, n := range []int{0, 1, 10_000} {
		for i := 0; i < n; i++ {
			if _, err := b.catalog.WriteRuntime(context.Background(), fmt.Sprintf("rt-%05d", i), newRuntimeBuilder(fmt.Sprintf("rt-%05d", i), 0)); err != nil {
				t.Fatal(err)
			}
		}
		for _, id := range []string{"a", "request-2b", "ab"} {
			plain, gz, resp := listBodies(t, b, s, "catalog/", id, acceptGzip)
			if !bytes.Equal(plain, gz) || resp.Headers["Content-Encoding"][0] != "gzip" || resp.Headers["Vary"][0] != "Accept-Encoding" {
				t.Fatalf("%d runtimes, id %s: the gzip body (%d bytes) is not the plain one (%d bytes), headers %v", n, id, len(gz), len(plain), resp.Headers)
			}
			if n == 10_000 {
				t.Logf("10,000 runtimes: %d bytes plain, %d gzipped", len(plain), len(resp.Data[logical.HTTPRawBody].(string))*3/4)
			}
		}
	}
	// Not when the client does not ask, nor when it refuses gzip.
	for _, h := range []map[string][]string{nil, {"Accept-Encoding": {"identity"}}, {"Accept-Encoding": {"gzip;q=0"}}} {
		if _, gz, resp := listBodies(t, b, s, "catalog/", "x", h); resp.Headers != nil || gz != nil && !json.Valid(gz) {
			t.Errorf("Accept-Encoding %v: compressed", h)
		}
	}
	// A wrapped list is not compressed: Vault stores the body and answers
	// the unwrap with it, without its headers.
	wrapped, err := b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ListOperation, Path: "catalog/",
		Storage: s, Headers: acceptGzip, WrapInfo: &logical.RequestWrapInfo{TTL: 60}})
	if err != nil || wrapped.Headers != nil || rawEnvelope(t, wrapped).Data["keys"] == nil {
		t.Fatalf("a wrapped list: %v %#v", err, wrapped.Headers)
	}
	// Plugins and hosted mounts are compressed too, and decode to their data.
	mustDo(t, b, s, logical.UpdateOperation, "plugins/catalog/secret/p", pluginData(nil))
	for _, path := range []string{"plugins/catalog/", "hosted/"} {
		resp, err := b.HandleRequest(context.Background(), &logical.Request{ID: "id", Operation: logical.ListOperation, Path: path, Storage: s, Headers: acceptGzip})
		if err != nil || resp.Headers["Content-Encoding"] == nil {
			t.Fatalf("%s: %v %#v", path, err, resp)
		}
		body, _ := base64.StdEncoding.DecodeString(resp.Data[logical.HTTPRawBody].(string))
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		gz, _ := io.ReadAll(zr)
		var envelope logical.HTTPResponse
		if json.Unmarshal(gz, &envelope) != nil || envelope.RequestID != "id" || envelope.Data["keys"] == nil {
			t.Errorf("%s gzipped: %s", path, gz)
		}
	}
}
