package runtimecatalog

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/hashicorp/vault/sdk/logical"
)

// A list of thousands of runtimes is megabytes of JSON. Returned as response
// data, it would be encoded by the plugin, decoded into maps by Vault and
// encoded again for HTTP on every request: with 10,000 runtimes that made a
// list slower than Vault's own. Instead the index keeps the list's JSON
// body, encoded once per change, and it is returned as a raw response, which
// Vault passes through as it is (base64 across gRPC, decoded by Vault).
// The body is the envelope Vault itself writes, so every client reads it
// as usual.

// envelopeEnd closes the response envelope after "data".
const envelopeEnd = `,"wrap_info":null,"warnings":null,"auth":null,"mount_type":""}`

// runtimeView is a runtime as responses show it.
type runtimeView struct {
	Name         string `json:"name"`
	Type         string `json:"type"`
	OCIRuntime   string `json:"oci_runtime"`
	CgroupParent string `json:"cgroup_parent"`
	CPUNanos     int64  `json:"cpu_nanos"`
	MemoryBytes  int64  `json:"memory_bytes"`
	Rootless     bool   `json:"rootless"`
}

func (r *runtimeEntry) view() runtimeView {
	return runtimeView{
		Name: r.Name, Type: r.Type, OCIRuntime: r.effectiveOCIRuntime(), CgroupParent: r.CgroupParent,
		CPUNanos: r.CPUNanos, MemoryBytes: r.MemoryBytes, Rootless: r.Rootless,
	}
}

// runtimeSummary is a runtime's key_info: a summary per name, as Vault's
// key_info conventionally is. The full settings are in "runtimes"; repeating
// them here doubled the bytes of a list, and its time.
type runtimeSummary struct {
	OCIRuntime string `json:"oci_runtime"`
}

func (r *runtimeEntry) summary() runtimeSummary {
	return runtimeSummary{OCIRuntime: r.effectiveOCIRuntime()}
}

// encodeRuntimeList returns base64 of the list's data object followed by the
// envelope's end, for runtimes sorted by name.
func encodeRuntimeList(sorted []*runtimeEntry) (string, error) {
	data := struct {
		Runtimes []runtimeView             `json:"runtimes"`
		Keys     []string                  `json:"keys"`
		KeyInfo  map[string]runtimeSummary `json:"key_info"`
	}{make([]runtimeView, len(sorted)), make([]string, len(sorted)), make(map[string]runtimeSummary, len(sorted))}
	for i, r := range sorted {
		data.Runtimes[i], data.Keys[i] = r.view(), r.Name
		data.KeyInfo[r.Name] = r.summary()
	}
	encoded, err := json.Marshal(data)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(append(encoded, envelopeEnd...)), nil
}

// rawListResponse wraps the cached body in the envelope's start, which
// carries this request's ID. The start is padded with JSON white space to a
// multiple of 3 bytes, so that its base64 and the cached base64 concatenate
// into the base64 of the whole body.
func rawListResponse(requestID, encodedRest string) *logical.Response {
	idJSON, _ := json.Marshal(requestID)
	start := `{"request_id":` + string(idJSON) + `,"lease_id":"","renewable":false,"lease_duration":0,"data":`
	if pad := len(start) % 3; pad != 0 {
		start += strings.Repeat(" ", 3-pad)
	}
	return &logical.Response{Data: map[string]interface{}{
		logical.HTTPStatusCode:  http.StatusOK,
		logical.HTTPContentType: "application/json",
		logical.HTTPRawBody:     base64.StdEncoding.EncodeToString([]byte(start)) + encodedRest,
	}}
}

// wrappable makes a list response one Vault can wrap. Vault wraps a list
// only if its "keys" is a []string, which a response from an external plugin
// never is after crossing gRPC as JSON, so a wrapped list from any external
// plugin fails with "unsupported path". Without "keys" Vault wraps the rest,
// as it does for its own catalog, which has no keys; the names are in
// key_info.
func wrappable(req *logical.Request, resp *logical.Response) *logical.Response {
	if req.Operation == logical.ListOperation && req.WrapInfo != nil {
		delete(resp.Data, "keys")
	}
	return resp
}
