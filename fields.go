package runtimecatalog

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/reqerr"
)

// An entity (a runtime, a plugin) names each of its fields once: its JSON
// tag is its name in the API, in responses and in storage. Applying a
// request's fields and shaping a response both go through those names, so a
// new field is one edit to the entity and one to its schema.

// entityFields returns the fields of the struct entity points to by their
// JSON names, embedded structs flattened as encoding/json flattens them.
func entityFields(entity interface{}) map[string]reflect.Value {
	fields, _ := entityFieldsAndOmitted(entity)
	return fields
}

// entityFieldsAndOmitted is entityFields, and the names of the fields that
// are zero and tagged omitempty: settings Vault's own catalog does not have,
// which responses (and storage) show only when set, so that an entity that
// uses none of them reads exactly as Vault's does.
func entityFieldsAndOmitted(entity interface{}) (map[string]reflect.Value, map[string]bool) {
	fields := map[string]reflect.Value{}
	omitted := map[string]bool{}
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.Anonymous && f.Type.Kind() == reflect.Struct {
				walk(v.Field(i))
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if f.IsExported() && name != "" && name != "-" {
				fields[name] = v.Field(i)
				if opts == "omitempty" && v.Field(i).IsZero() {
					omitted[name] = true
				}
			}
		}
	}
	walk(reflect.ValueOf(entity).Elem())
	return fields, omitted
}

// fieldData is every field of the struct entity points to, by JSON name,
// with its Go value (int64 stays int64, as Vault's own responses have it).
func fieldData(entity interface{}) map[string]interface{} {
	data := map[string]interface{}{}
	fields, omitted := entityFieldsAndOmitted(entity)
	for name, v := range fields {
		if !omitted[name] {
			data[name] = v.Interface()
		}
	}
	return data
}

// applySentFields sets each settable field that the request sent onto the
// struct entity points to, parsed by its schema; a field sent as null (a JSON
// merge patch's way to reset it) is reset. Fields not sent are left alone:
// this is what makes PATCH change only what it names, and a full write reset
// what it leaves out (it starts from an empty entity).
func applySentFields(entity interface{}, d *framework.FieldData, settable map[string]*framework.FieldSchema) error {
	fields := entityFields(entity)
	names := make([]string, 0, len(settable))
	for name := range settable {
		names = append(names, name)
	}
	sort.Strings(names) // the first bad field is always the same one
	for _, name := range names {
		raw, sent := d.Raw[name]
		if !sent {
			continue
		}
		f, ok := fields[name]
		if !ok {
			return fmt.Errorf("settable field %q is not a field of %T", name, entity)
		}
		if raw == nil {
			f.Set(reflect.Zero(f.Type()))
			continue
		}
		v, err := strictValue(name, settable[name], raw, d)
		if err != nil {
			return reqerr.BadRequest(err)
		}
		f.Set(reflect.ValueOf(v).Convert(f.Type()))
	}
	return nil
}

// maxExactJSONInteger is the largest integer a JSON number carries exactly
// to a plugin: Vault decodes a request's data into float64 on the way.
const maxExactJSONInteger = 1 << 53

var decimalInteger = regexp.MustCompile(`^-?(0|[1-9][0-9]*)$`)

// strictValue parses a field's raw value by its schema's type, refusing
// what the framework would coerce: a number for a string, a fraction or an
// octal-looking string for an integer, an object for a list.
func strictValue(name string, schema *framework.FieldSchema, raw interface{}, d *framework.FieldData) (interface{}, error) {
	switch schema.Type {
	case framework.TypeString:
		if s, ok := raw.(string); ok {
			return s, nil
		}
		return nil, fmt.Errorf("%s must be a string, not %s", name, jsonKind(raw))
	case framework.TypeBool:
		switch v := raw.(type) {
		case bool:
			return v, nil
		case string:
			if v == "true" || v == "false" {
				return v == "true", nil
			}
		}
		return nil, fmt.Errorf("%s must be true or false, not %s", name, jsonKind(raw))
	case framework.TypeInt64, framework.TypeInt:
		return strictInt64(name, raw)
	case framework.TypeStringSlice:
		switch v := raw.(type) {
		case string:
			return []string{v}, nil
		case []string:
			return v, nil
		case []interface{}:
			out := make([]string, len(v))
			for i, item := range v {
				s, ok := item.(string)
				if !ok {
					return nil, fmt.Errorf("%s must be a list of strings; item %d is %s", name, i, jsonKind(item))
				}
				out[i] = s
			}
			return out, nil
		}
		return nil, fmt.Errorf("%s must be a list of strings, not %s", name, jsonKind(raw))
	default:
		v, _, err := d.GetOkErr(name)
		return v, err
	}
}

// strictInt64 takes an integer exactly as sent: a JSON number that is a
// whole number below 2^53, or a decimal string over the whole int64 range.
func strictInt64(name string, raw interface{}) (int64, error) {
	rule := fmt.Sprintf("%s must be a whole number in decimal, from %d to %d (beyond ±2^53 send it as a string, "+
		`"9007199254740993": a JSON number loses precision on its way to a plugin)`, name, int64(math.MinInt64), int64(math.MaxInt64))
	switch v := raw.(type) {
	case int:
		return int64(v), nil
	case int64:
		return v, nil
	case int32:
		return int64(v), nil
	case float64:
		if v != math.Trunc(v) || math.Abs(v) >= maxExactJSONInteger {
			return 0, fmt.Errorf("%s: %v is not exact: %s", name, v, rule)
		}
		return int64(v), nil
	case json.Number:
		return parseDecimal(name, v.String(), rule)
	case string:
		return parseDecimal(name, v, rule)
	}
	return 0, fmt.Errorf("%s is %s: %s", name, jsonKind(raw), rule)
}

func parseDecimal(name, s, rule string) (int64, error) {
	if !decimalInteger.MatchString(s) {
		return 0, fmt.Errorf("%s: %q is not an integer: %s", name, s, rule)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is out of range: %s", name, s, rule)
	}
	return n, nil
}

// jsonKind names a raw value's JSON type for an error message.
func jsonKind(raw interface{}) string {
	switch raw.(type) {
	case bool:
		return "true or false"
	case string:
		return "a string"
	case float64, json.Number, int, int64, int32:
		return "a number"
	case []interface{}, []string:
		return "a list"
	case map[string]interface{}:
		return "an object"
	case nil:
		return "null"
	}
	return fmt.Sprintf("a %T", raw)
}

// unknownFields are the fields a request sent that the path does not know.
func unknownFields(d *framework.FieldData) []string { return unknownKeys(d.Raw, d.Schema) }

// unknownKeys are the keys of data that schema does not have, sorted.
func unknownKeys(data map[string]interface{}, schema map[string]*framework.FieldSchema) []string {
	var unknown []string
	for k := range data {
		if _, ok := schema[k]; !ok {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	return unknown
}
