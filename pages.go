package runtimecatalog

import (
	"sort"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/reqerr"
)

// Lists take pages as OpenBao's do: "after" (the last key of the previous
// page; it need not exist) and "limit" (how many keys at most), as query
// parameters: LIST …?after=x&limit=100, or vault read … list=true after=x
// limit=100. Without them a list returns everything.

// pageFields are the fields every list path has, beside its own.
func pageFields(fields map[string]*framework.FieldSchema) map[string]*framework.FieldSchema {
	if fields == nil {
		fields = map[string]*framework.FieldSchema{}
	}
	fields["after"] = &framework.FieldSchema{
		Type: framework.TypeString, Query: true,
		Description: "List the keys after this one, for the next page; it need not exist.",
	}
	fields["limit"] = &framework.FieldSchema{
		Type: framework.TypeInt, Query: true,
		Description: "List at most this many keys (a positive integer); all when not given.",
	}
	return fields
}

// page is a list request's page: everything when neither field was sent.
type page struct {
	after string
	limit int64 // 0: no limit
	paged bool
}

func pageOf(d *framework.FieldData) (page, error) {
	var p page
	if raw, ok := d.Raw["after"]; ok && raw != nil {
		after, err := strictValue("after", d.Schema["after"], raw, d)
		if err != nil {
			return p, reqerr.BadRequest(err)
		}
		p.after, p.paged = after.(string), true
	}
	if raw, ok := d.Raw["limit"]; ok && raw != nil {
		limit, err := strictInt64("limit", raw)
		if err != nil {
			return p, reqerr.BadRequest(err)
		}
		if limit <= 0 {
			return p, reqerr.BadRequestf("limit %d is not a positive number of keys", limit)
		}
		p.limit, p.paged = limit, true
	}
	return p, nil
}

// bounds are the indexes [from, to) of the page among n sorted keys, key(i)
// giving the i-th.
func (p page) bounds(n int, key func(i int) string) (int, int) {
	from := 0
	if p.after != "" {
		from = sort.Search(n, func(i int) bool { return key(i) > p.after })
	}
	to := n
	if p.limit > 0 && int64(to-from) > p.limit {
		to = from + int(p.limit)
	}
	return from, to
}
