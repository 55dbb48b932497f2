package runtimecatalog

import (
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// eachSentField calls set for each of fields that the request sent, with its
// parsed value, or nil for a field sent as null (a JSON merge patch's way to
// reset it). Fields not sent are left alone: this is what makes PATCH change
// only what it names, and a full write reset what it leaves out.
func eachSentField(d *framework.FieldData, fields []string, set func(field string, v interface{})) error {
	for _, field := range fields {
		raw, sent := d.Raw[field]
		if !sent {
			continue
		}
		var v interface{}
		if raw != nil {
			var err error
			if v, _, err = d.GetOkErr(field); err != nil {
				return err
			}
		}
		set(field, v)
	}
	return nil
}

// buildFailure answers a write whose entry could not be built: a coded error
// (such as patching what does not exist) keeps its status, anything else is a
// 400 with the error's text.
func buildFailure(err error) (*logical.Response, error) {
	if coded, ok := err.(logical.HTTPCodedError); ok {
		return nil, coded
	}
	return logical.ErrorResponse(err.Error()), nil
}
