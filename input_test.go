package runtimecatalog

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// refused sends each write, which must be a 400 saying want, and checks
// that storage is exactly as before.
func refused(t *testing.T, b *backend, s logical.Storage, op logical.Operation, path string, cases map[string]map[string]interface{}, want func(name string) string) {
	t.Helper()
	for name, data := range cases {
		before := snapshot(t, s)
		msg := errorOf(t, b, s, op, path, data)
		framework := `Field validation failed: error converting input for field "`
		if w := want(name); !strings.Contains(msg, w) && !strings.HasPrefix(msg, framework) {
			t.Errorf("%s %v: %q does not say %q", path, data, msg, w)
		}
		if after := snapshot(t, s); !reflect.DeepEqual(before, after) {
			t.Errorf("%s %v: a refused write changed storage", path, data)
		}
	}
}

func TestLimitsTheEngineWouldDropAreRefused(t *testing.T) {
	b, s := newTestBackend(t)
	mustDo(t, b, s, logical.UpdateOperation, "catalog/container/r", map[string]interface{}{"cpu_nanos": minNanoCPUs})
	cases := map[string]map[string]interface{}{}
	for _, v := range []int64{1, 9_999, 10_000, 5_000_000, 9_999_999} {
		cases[string(rune('a'+len(cases)))] = map[string]interface{}{"cpu_nanos": v}
	}
	refused(t, b, s, logical.UpdateOperation, "catalog/container/r", cases, func(string) string {
		return "is too small: use 0 for no limit or at least 10000000 (0.01 CPU"
	})
	refused(t, b, s, logical.PatchOperation, "catalog/container/r", cases, func(string) string { return "is too small" })
	for _, ok := range []int64{0, minNanoCPUs, 2_500_000_000} {
		mustDo(t, b, s, logical.UpdateOperation, "catalog/container/r", map[string]interface{}{"cpu_nanos": ok})
	}
}

func TestNamesStorageRefusesAreRefused(t *testing.T) {
	b, s := newTestBackend(t)
	for _, name := range []string{"a..b", "a...b", "x..y.z", "1..2"} {
		for _, path := range []string{"catalog/container/", "plugins/catalog/secret/", "hosted/"} {
			before := snapshot(t, s)
			msg := errorOf(t, b, s, logical.UpdateOperation, path+name, pluginData(map[string]interface{}{"plugin": "kv"}))
			if !strings.Contains(msg, "and no '..'") || !strings.Contains(msg, name) {
				t.Errorf("%s%s: %s", path, name, msg)
			}
			if !reflect.DeepEqual(before, snapshot(t, s)) {
				t.Errorf("%s%s changed storage", path, name)
			}
		}
	}
}

func TestIntegersAreTakenExactlyOrRefused(t *testing.T) {
	b, s := newTestBackend(t)
	mustDo(t, b, s, logical.UpdateOperation, "catalog/container/r", map[string]interface{}{"memory_bytes": minMemoryBytes})
	refused(t, b, s, logical.UpdateOperation, "catalog/container/r", map[string]map[string]interface{}{
		"fraction":          {"memory_bytes": 6291456.5},
		"fraction as JSON":  {"memory_bytes": json.Number("6291456.5")},
		"above 2^53 float":  {"memory_bytes": float64(1<<53 + 2)},
		"int64 max float":   {"memory_bytes": float64(9223372036854775807)},
		"octal-looking":     {"cpu_nanos": "010000000"},
		"exponent":          {"memory_bytes": json.Number("1e7")},
		"hex":               {"memory_bytes": "0x1000000"},
		"plus":              {"memory_bytes": "+7000000"},
		"past int64":        {"memory_bytes": "9223372036854775808"},
		"a bool":            {"memory_bytes": true},
		"an object":         {"cpu_nanos": map[string]interface{}{"n": 1}},
		"a list":            {"cpu_nanos": []interface{}{10000000}},
		"JSON number 2^53+": {"cpu_nanos": json.Number("1e300")},
	}, func(string) string { return "must be a whole number in decimal" })

	// Exact over the whole int64 range, as a string or a JSON number, and a
	// read and a list agree.
	for _, tc := range []struct {
		sent interface{}
		want int64
	}{
		{"9223372036854775807", 9223372036854775807},
		{json.Number("9007199254740993"), 9007199254740993},
		{"9007199254740993", 9007199254740993},
		{float64(1 << 52), 1 << 52},
	} {
		mustDo(t, b, s, logical.UpdateOperation, "catalog/container/big", map[string]interface{}{"memory_bytes": tc.sent})
		read := mustDo(t, b, s, logical.ReadOperation, "catalog/container/big", nil).Data["memory_bytes"]
		if read != tc.want {
			t.Errorf("sent %v (%T): read %v (%T), want %d", tc.sent, tc.sent, read, read, tc.want)
		}
		stored, _ := b.catalog.Runtime(context.Background(), "big")
		if stored.MemoryBytes != tc.want {
			t.Errorf("sent %v: stored %d", tc.sent, stored.MemoryBytes)
		}
	}
}

func TestValuesThatCanNeverWorkAreRefused(t *testing.T) {
	b, s := newTestBackend(t)
	mustDo(t, b, s, logical.UpdateOperation, "plugins/catalog/secret/p", pluginData(nil))
	long := strings.Repeat("x", maxExecString+1)
	many := make([]interface{}, 0, 10)
	for i := 0; i < 10; i++ {
		many = append(many, strings.Repeat("y", 120_000))
	}
	for name, tc := range map[string]struct {
		data map[string]interface{}
		want string
	}{
		"build metadata":  {pluginData(map[string]interface{}{"version": "1.0.0+build"}), `version "1.0.0+build" cannot be an image tag`},
		"NUL in an arg":   {pluginData(map[string]interface{}{"args": []interface{}{"-a", "b\x00c"}}), "args[1] must not contain a NUL byte"},
		"NUL in command":  {pluginData(map[string]interface{}{"command": "/k\x00v"}), "command must not contain a NUL byte"},
		"a long arg":      {pluginData(map[string]interface{}{"args": []interface{}{long}}), "args[0] is 131072 bytes: the kernel starts a process with strings of at most 131071 bytes"},
		"too much":        {pluginData(map[string]interface{}{"args": many}), "command, args and env are"},
		"a bool string":   {pluginData(map[string]interface{}{"oci_image": true}), "oci_image must be a string, not true or false"},
		"a number string": {pluginData(map[string]interface{}{"version": json.Number("1")}), "version must be a string, not a number"},
		"an object list":  {pluginData(map[string]interface{}{"args": map[string]interface{}{"a": "b"}}), "args must be a list of strings, not an object"},
		"a list of ints":  {pluginData(map[string]interface{}{"env": []interface{}{"A=1", 2}}), "env must be a list of strings; item 1 is a number"},
		"a bool of text":  {map[string]interface{}{"rootless": "yes"}, "rootless must be true or false, not a string"},
	} {
		path := "plugins/catalog/secret/p"
		if strings.HasPrefix(name, "a bool of") {
			path = "catalog/container/r"
		}
		refused(t, b, s, logical.UpdateOperation, path, map[string]map[string]interface{}{name: tc.data}, func(string) string { return tc.want })
	}
}

func TestUnknownFieldsAreWarnedOfEverywhere(t *testing.T) {
	b, s := newTestBackend(t)
	mustDo(t, b, s, logical.UpdateOperation, "plugins/catalog/secret/p", pluginData(nil))
	const warning = "Endpoint ignored these unrecognized parameters: [cpu]"
	for _, tc := range []struct {
		op   logical.Operation
		path string
	}{
		{logical.UpdateOperation, "catalog/container/r"},
		{logical.PatchOperation, "catalog/container/r"},
		{logical.ReadOperation, "catalog/container/r"},
		{logical.ListOperation, "catalog/"},
		{logical.ReadOperation, "catalog"},
		{logical.ListOperation, "plugins/catalog/"},
		{logical.PatchOperation, "plugins/catalog/secret/p"},
		{logical.ListOperation, "hosted/"},
	} {
		resp, err := b.HandleRequest(context.Background(), &logical.Request{ID: "test-request", Operation: tc.op, Path: tc.path, Storage: s, Data: map[string]interface{}{"cpu": "1"}})
		if err != nil || resp == nil || !reflect.DeepEqual(resp.Warnings, []string{warning}) {
			t.Errorf("%s %s: %v %#v", tc.op, tc.path, err, resp)
		}
	}
}

func TestListsHaveOneShapeAndOneTypeFilter(t *testing.T) {
	b, s := newTestBackend(t)
	for _, path := range []string{"plugins/catalog/", "hosted/", "catalog/"} {
		data := mustDo(t, b, s, logical.ListOperation, path, nil).Data
		keys, hasKeys := data["keys"]
		if !hasKeys || keys == nil || data["key_info"] == nil || len(listKeys(t, data)) != 0 {
			t.Errorf("empty %s: %#v", path, data)
		}
	}
	mustDo(t, b, s, logical.UpdateOperation, "plugins/catalog/secret/p", pluginData(nil))
	mustDo(t, b, s, logical.UpdateOperation, "plugins/catalog/auth/q", pluginData(nil))
	if keys := listKeys(t, mustDo(t, b, s, logical.ListOperation, "plugins/catalog/", map[string]interface{}{"type": "secret"}).Data); !reflect.DeepEqual(keys, []string{"p"}) {
		t.Errorf("plugins ?type=secret: %v", keys)
	}
	for _, path := range []string{"plugins/catalog/", "catalog/"} {
		if msg := errorOf(t, b, s, logical.ListOperation, path, map[string]interface{}{"type": "bogus"}); !strings.Contains(msg, `"bogus" is not a supported`) {
			t.Errorf("%s ?type=bogus: %s", path, msg)
		}
	}
}
