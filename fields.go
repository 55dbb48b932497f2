package runtimecatalog

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// An entity (a runtime, a plugin) names each of its fields once: its JSON
// tag is its name in the API, in responses and in storage. Applying a
// request's fields and shaping a response both go through those names, so a
// new field is one edit to the entity and one to its schema.

// entityFields returns the fields of the struct entity points to by their
// JSON names, embedded structs flattened as encoding/json flattens them.
func entityFields(entity interface{}) map[string]reflect.Value {
	fields := map[string]reflect.Value{}
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.Anonymous && f.Type.Kind() == reflect.Struct {
				walk(v.Field(i))
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if f.IsExported() && name != "" && name != "-" {
				fields[name] = v.Field(i)
			}
		}
	}
	walk(reflect.ValueOf(entity).Elem())
	return fields
}

// fieldData is every field of the struct entity points to, by JSON name,
// with its Go value (int64 stays int64, as Vault's own responses have it).
func fieldData(entity interface{}) map[string]interface{} {
	data := map[string]interface{}{}
	for name, v := range entityFields(entity) {
		data[name] = v.Interface()
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
		v, _, err := d.GetOkErr(name)
		if err != nil {
			return badRequest(err)
		}
		f.Set(reflect.ValueOf(v).Convert(f.Type()))
	}
	return nil
}

// requestError is the request's fault: Vault answers 400 with its text,
// which names the field and the rule.
type requestError struct{ error }

func (e requestError) Unwrap() error { return e.error }

func badRequest(err error) error { return requestError{err} }

func badRequestf(format string, args ...interface{}) error {
	return requestError{fmt.Errorf(format, args...)}
}

// respondError answers a request that failed: a 400 for the request's
// fault, a coded error (such as 404) with its code, anything else a 500.
func respondError(err error) (*logical.Response, error) {
	var re requestError
	if errors.As(err, &re) {
		return logical.ErrorResponse(err.Error()), nil
	}
	return nil, err
}
