package acceptance

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
)

// rawRequest sends a request with exactly the headers given: Go's transport
// neither adds Accept-Encoding nor decodes the answer.
func rawRequest(t *testing.T, v *vaulttest.Server, method, path string, headers map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, v.Addr+"/v1/"+path, nil)
	req.Header.Set("X-Vault-Token", v.Token)
	for k, val := range headers {
		req.Header.Set(k, val)
	}
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

func listKeysOf(t *testing.T, body []byte) []string {
	t.Helper()
	var envelope struct {
		Data struct {
			Keys []string `json:"keys"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &envelope); err != nil {
		t.Fatalf("not JSON (%v): %.80q", err, body)
	}
	return envelope.Data.Keys
}

func TestCompressedListsThroughTheServer(t *testing.T) {
	vaulttest.EachServer(t, testCompressedListsThroughTheServer)
}

func testCompressedListsThroughTheServer(t *testing.T, k vaulttest.Kind) {
	v := k.StartDev(t, "runtimes")
	v.MustRun(t, "secrets", "enable", "-path=untuned", vaulttest.PluginName)

	// An untuned mount refuses the setting, naming the command.
	_, errOut, code := v.Run(t, "write", "untuned/config", "compress_lists=true")
	if code != 2 || !strings.Contains(folded(errOut), "vault secrets tune -passthrough-request-headers=Accept-Encoding -allowed-response-headers=Content-Encoding -allowed-response-headers=Vary untuned/") {
		t.Fatalf("compress_lists on an untuned mount: exit %d\n%s", code, errOut)
	}
	// The one command, then the setting.
	v.MustRun(t, "secrets", "tune", "-passthrough-request-headers=Accept-Encoding",
		"-allowed-response-headers=Content-Encoding", "-allowed-response-headers=Vary", "runtimes/")
	v.MustRun(t, "write", "runtimes/config", "compress_lists=true")

	const n = 10_000
	next := make(chan int)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				req, _ := http.NewRequest("POST", fmt.Sprintf("%s/v1/runtimes/catalog/container/rt-%05d", v.Addr, i), strings.NewReader(`{"oci_runtime":"runc"}`))
				req.Header.Set("X-Vault-Token", v.Token)
				resp, err := http.DefaultClient.Do(req)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode >= 300 {
						err = fmt.Errorf("rt-%05d: HTTP %d", i, resp.StatusCode)
					}
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// The vault CLI asks for gzip (Go's transport) and prints every name.
	var keys []string
	v.MustJSON(t, &keys, "list", "runtimes/catalog")
	if len(keys) != n || keys[0] != "rt-00000" || keys[n-1] != fmt.Sprintf("rt-%05d", n-1) {
		t.Fatalf("vault list: %d keys", len(keys))
	}
	// curl without --compressed: plain JSON.
	resp, plain := rawRequest(t, v, "LIST", "runtimes/catalog", nil)
	if resp.Header.Get("Content-Encoding") != "" || len(listKeysOf(t, plain)) != n {
		t.Fatalf("plain LIST: Content-Encoding %q, %d bytes", resp.Header.Get("Content-Encoding"), len(plain))
	}
	// curl --compressed: gzip, which decodes to the same JSON.
	resp, compressed := rawRequest(t, v, "LIST", "runtimes/catalog", map[string]string{"Accept-Encoding": "deflate, gzip, br, zstd"})
	if resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Vary") != "Accept-Encoding" {
		t.Fatalf("LIST with Accept-Encoding: headers %v", resp.Header)
	}
	zr, err := gzip.NewReader(bytes.NewReader(compressed))
	if err != nil {
		t.Fatal(err)
	}
	decoded, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("10,000 runtimes through Vault: %d bytes plain, %d gzipped", len(plain), len(compressed))
	if len(listKeysOf(t, decoded)) != n || !bytes.Equal(bytes.SplitN(decoded, []byte(`"data":`), 2)[1], bytes.SplitN(plain, []byte(`"data":`), 2)[1]) {
		t.Fatal("the gzip body is not the plain one")
	}
	// The untuned mount answers plain JSON whatever the client asks.
	v.MustRun(t, "write", "-f", "untuned/catalog/container/x")
	resp, body := rawRequest(t, v, "LIST", "untuned/catalog", map[string]string{"Accept-Encoding": "gzip"})
	if resp.Header.Get("Content-Encoding") != "" || len(listKeysOf(t, body)) != 1 {
		t.Fatalf("untuned LIST: %v %.80q", resp.Header, body)
	}
}
