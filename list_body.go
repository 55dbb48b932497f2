package runtimecatalog

import (
	"bytes"
	"compress/flate"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"

	"github.com/hashicorp/vault/sdk/logical"
)

// A list of thousands of runtimes is megabytes of JSON. Returned as response
// data, it would be encoded by the plugin, decoded into maps by Vault and
// encoded again for HTTP on every request: with 10,000 runtimes that made a
// list slower than Vault's own. Instead the index keeps the list's JSON
// body, encoded once per change, and it is returned as a raw response, which
// Vault passes through as it is (base64 across gRPC, decoded by Vault).
// The body is kept in a listBodyCache until the catalog's next change.
// The body is the envelope Vault itself writes, so every client reads it
// as usual.

// envelopeEnd closes the response envelope after "data".
const envelopeEnd = `,"wrap_info":null,"warnings":null,"auth":null,"mount_type":""}`

// encodeRuntimeList returns the list's data object followed by the
// envelope's end, for runtimes sorted by name: the part of the body that
// is the same for every request.
func encodeRuntimeList(sorted []*runtimeEntry) ([]byte, error) {
	data := struct {
		Runtimes []runtimeEntry            `json:"runtimes"`
		Keys     []string                  `json:"keys"`
		KeyInfo  map[string]runtimeSummary `json:"key_info"`
	}{make([]runtimeEntry, len(sorted)), make([]string, len(sorted)), make(map[string]runtimeSummary, len(sorted))}
	for i, r := range sorted {
		data.Runtimes[i], data.Keys[i] = r.view(), r.Name
		data.KeyInfo[r.Name] = r.summary()
	}
	encoded, err := json.Marshal(data)
	if err != nil {
		return nil, err
	}
	return append(encoded, envelopeEnd...), nil
}

// listBody is a list's constant part, ready to be sent: compressed once a
// client asked for gzip, and as base64 for a plain body. When gzip is in
// use only the compressed form (a thirtieth of the plain size) is kept, and
// the base64 is made from it when a plain request comes.
type listBody struct {
	gz      *gzipRest
	b64Once sync.Once
	b64     string
	b64Err  error
}

func newListBody(rest []byte, wantGzip bool) (*listBody, error) {
	if !wantGzip {
		body := &listBody{b64: base64.StdEncoding.EncodeToString(rest)}
		body.b64Once.Do(func() {})
		return body, nil
	}
	gz, err := compressRest(rest)
	if err != nil {
		return nil, err
	}
	return &listBody{gz: gz}, nil
}

// plain is the base64 of the uncompressed rest.
func (lb *listBody) plain() (string, error) {
	lb.b64Once.Do(func() {
		rest, err := io.ReadAll(flate.NewReader(bytes.NewReader(lb.gz.deflated)))
		lb.b64, lb.b64Err = base64.StdEncoding.EncodeToString(rest), err
	})
	return lb.b64, lb.b64Err
}

// envelopeStart is the start of Vault's envelope for a request: what varies.
func envelopeStart(requestID string) string {
	idJSON, _ := json.Marshal(requestID)
	return `{"request_id":` + string(idJSON) + `,"lease_id":"","renewable":false,"lease_duration":0,"data":`
}

// response wraps the body in the envelope's start, which carries this
// request's ID: gzip when the client negotiated it, else plain. For a plain
// body the start is padded with JSON white space to a multiple of 3 bytes,
// so that its base64 and the cached base64 concatenate into the base64 of
// the whole.
func (lb *listBody) response(requestID string, gzipped bool) (*logical.Response, error) {
	start := envelopeStart(requestID)
	if pad := len(start) % 3; pad != 0 {
		start += strings.Repeat(" ", 3-pad)
	}
	if gzipped && lb.gz != nil { // the same bytes as the plain body, compressed
		return gzipResponse(lb.gz.member([]byte(start))), nil
	}
	b64, err := lb.plain()
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: map[string]interface{}{
		logical.HTTPStatusCode:  http.StatusOK,
		logical.HTTPContentType: "application/json",
		logical.HTTPRawBody:     base64.StdEncoding.EncodeToString([]byte(start)) + b64,
	}}, nil
}

// gzipResponse is a raw response of a gzip body, with the headers a client
// decodes it by; the mount must allow them back (allowed_response_headers).
func gzipResponse(member []byte) *logical.Response {
	return &logical.Response{
		Data: map[string]interface{}{
			logical.HTTPStatusCode:  http.StatusOK,
			logical.HTTPContentType: "application/json",
			logical.HTTPRawBody:     base64.StdEncoding.EncodeToString(member),
		},
		Headers: map[string][]string{"Content-Encoding": {"gzip"}, "Vary": {"Accept-Encoding"}},
	}
}

// gzipData answers with data as Vault's own envelope, compressed for this
// request: for the lists that are not cached (plugins, hosted mounts).
func gzipData(requestID string, data interface{}) (*logical.Response, error) {
	encoded, err := json.Marshal(data)
	if err != nil {
		return nil, err
	}
	g, err := compressRest(append([]byte(envelopeStart(requestID)), append(encoded, envelopeEnd...)...))
	if err != nil {
		return nil, err
	}
	return gzipResponse(g.member(nil)), nil
}

// rawDataResponse answers with data as Vault's own envelope, raw: Vault
// decodes a plugin's response data into float64 on its way through, which
// rounds an int64 above 2^53; a raw body reaches the client as written.
func rawDataResponse(requestID string, data interface{}, warnings []string) (*logical.Response, error) {
	encoded, err := json.Marshal(struct {
		RequestID     string      `json:"request_id"`
		LeaseID       string      `json:"lease_id"`
		Renewable     bool        `json:"renewable"`
		LeaseDuration int         `json:"lease_duration"`
		Data          interface{} `json:"data"`
		WrapInfo      interface{} `json:"wrap_info"`
		Warnings      []string    `json:"warnings"`
		Auth          interface{} `json:"auth"`
		MountType     string      `json:"mount_type"`
	}{RequestID: requestID, Data: data, Warnings: warnings})
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: map[string]interface{}{
		logical.HTTPStatusCode:  http.StatusOK,
		logical.HTTPContentType: "application/json",
		logical.HTTPRawBody:     base64.StdEncoding.EncodeToString(encoded),
	}}, nil
}

// listResponse is a list with "keys" and "key_info" always present, so an
// empty list has the shape of a full one (the SDK's ListResponseWithInfo
// leaves both out when there are no keys).
func listResponse(keys []string, keyInfo map[string]interface{}) *logical.Response {
	if keys == nil {
		keys = []string{}
	}
	if keyInfo == nil {
		keyInfo = map[string]interface{}{}
	}
	return &logical.Response{Data: map[string]interface{}{"keys": keys, "key_info": keyInfo}}
}

// wrappable makes a list response one Vault can wrap, and unwrap to the
// list itself. Vault wraps a list only if its "keys" is a []string, which a
// response from an external plugin never is after crossing gRPC as JSON, so
// a wrapped list from any external plugin fails with "unsupported path"
// (Vault's own containerized kv too). A raw body has no "keys" for Vault to
// check, and unwrapping a raw body answers with that body: Vault's envelope
// around the list, as an unwrapped list answers. An empty list stays as it
// is, for Vault's rule that a wrapped list of nothing is a 404. Every list
// of this plugin's, its own and its hosted mounts', is wrapped by this.
func wrappable(req *logical.Request, resp *logical.Response) (*logical.Response, error) {
	if req.Operation != logical.ListOperation || req.WrapInfo == nil || req.WrapInfo.TTL <= 0 || resp == nil || resp.Secret != nil || resp.Auth != nil {
		return resp, nil
	}
	if keys, ok := resp.Data["keys"]; !ok || reflect.ValueOf(keys).Kind() != reflect.Slice || reflect.ValueOf(keys).Len() == 0 {
		return resp, nil
	}
	return rawDataResponse(req.ID, resp.Data, resp.Warnings)
}

// listBodyCache keeps one list body for the catalog generation it was
// encoded from, so a list costs an encoding (and a compression, once gzip
// is asked for) only after a change.
type listBodyCache struct {
	mu         sync.Mutex
	generation uint64
	body       *listBody
	// encoding is held by the one request that encodes a new body: the
	// others wait for it rather than each encoding megabytes and
	// compressing them, which concurrent lists of a large catalog would do
	// at once.
	encoding sync.Mutex
}

func (lc *listBodyCache) cached(gen uint64, wantGzip bool) *listBody {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.body != nil && lc.generation == gen && (!wantGzip || lc.body.gz != nil) {
		return lc.body
	}
	return nil
}

// get returns the body for generation gen, encoding it when the cached one
// is of another generation or lacks the gzip form asked for. Reads of the
// cached body never wait; one request encodes a new one.
func (lc *listBodyCache) get(gen uint64, encode func() ([]byte, error), wantGzip bool) (*listBody, error) {
	if body := lc.cached(gen, wantGzip); body != nil {
		return body, nil
	}
	lc.encoding.Lock()
	defer lc.encoding.Unlock()
	if body := lc.cached(gen, wantGzip); body != nil { // encoded while this one waited
		return body, nil
	}
	rest, err := encode()
	if err != nil {
		return nil, err
	}
	body, err := newListBody(rest, wantGzip)
	if err != nil {
		return nil, err
	}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if gen > lc.generation || (gen == lc.generation && (lc.body == nil || lc.body.gz == nil)) {
		// never an older body, never one with less
		lc.body, lc.generation = body, gen
	}
	return body, nil
}
