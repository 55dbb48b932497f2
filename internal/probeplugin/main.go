// Command probeplugin is a Vault secrets plugin for the hosting tests: it
// declares a root (sudo) path, tries to read and list what lies outside
// the storage it was given, answers as large as it is asked to, allocates
// as much as it is asked to, and panics on one path.
package main

import (
	"context"
	"os"
	"strconv"
	"strings"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/plugin"
)

func main() {
	// "sleep": stay up without serving, as a plugin that outlives its host
	// would (for the tests that reap such containers).
	if len(os.Args) > 1 && os.Args[1] == "sleep" {
		select {}
	}
	// PROBE_HANDSHAKE_DELAY: a plugin slow to start (its handshake comes
	// that many seconds late).
	if d, err := time.ParseDuration(os.Getenv("PROBE_HANDSHAKE_DELAY")); err == nil {
		time.Sleep(d)
	}
	err := plugin.ServeMultiplex(&plugin.ServeOpts{BackendFactoryFunc: factory})
	if err != nil {
		hclog.New(&hclog.LoggerOptions{}).Error("plugin shutting down", "error", err)
		os.Exit(1)
	}
}

func factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := &framework.Backend{
		BackendType:  logical.TypeLogical,
		PathsSpecial: &logical.Paths{Root: []string{"admin"}},
		Paths: []*framework.Path{
			{
				Pattern: "admin",
				Operations: map[logical.Operation]framework.OperationHandler{
					logical.ReadOperation: &framework.PathOperation{Callback: func(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
						return &logical.Response{Data: map[string]interface{}{"admin": true}}, nil
					}},
				},
			},
			{
				Pattern: "open",
				Operations: map[logical.Operation]framework.OperationHandler{
					logical.ReadOperation: &framework.PathOperation{Callback: func(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
						return &logical.Response{Data: map[string]interface{}{"open": true}}, nil
					}},
				},
			},
			{
				// big answers size bytes: a plugin whose answers are too
				// large for its host to take.
				Pattern: "big",
				Fields:  map[string]*framework.FieldSchema{"size": {Type: framework.TypeInt}},
				Operations: map[logical.Operation]framework.OperationHandler{
					logical.ReadOperation: &framework.PathOperation{Callback: func(_ context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
						return &logical.Response{Data: map[string]interface{}{"big": strings.Repeat("x", d.Get("size").(int))}}, nil
					}},
				},
			},
			{
				// panic panics, as a plugin with a bug on one path does; the
				// SDK does not recover it, so the plugin exits with code 2.
				Pattern: "panic",
				Operations: map[logical.Operation]framework.OperationHandler{
					logical.ReadOperation: &framework.PathOperation{Callback: func(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
						panic("probe: asked to panic")
					}},
				},
			},
			{
				// alloc allocates and touches mb MiB and holds them while it
				// answers: a plugin that goes past its memory limit.
				Pattern: "alloc",
				Fields:  map[string]*framework.FieldSchema{"mb": {Type: framework.TypeInt}},
				Operations: map[logical.Operation]framework.OperationHandler{
					logical.ReadOperation: &framework.PathOperation{Callback: func(_ context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
						// Logged at info: the tests find it in Vault's log, under
						// the mount's name.
						conf.Logger.Info("probe: allocating", "mb", d.Get("mb").(int))
						held := make([][]byte, 0, d.Get("mb").(int))
						for i := 0; i < cap(held); i++ {
							chunk := make([]byte, 1<<20)
							for j := range chunk {
								chunk[j] = byte(j) // touched, so it is resident
							}
							held = append(held, chunk)
						}
						return &logical.Response{Data: map[string]interface{}{"allocated_mb": len(held)}}, nil
					}},
				},
			},
			{
				// count counts the writes it applied, in its storage; with
				// exit=true the process exits right after applying one,
				// before it answers: a write that reached the plugin, whose
				// answer never came.
				Pattern: "count",
				Fields:  map[string]*framework.FieldSchema{"exit": {Type: framework.TypeBool}},
				Operations: map[logical.Operation]framework.OperationHandler{
					logical.UpdateOperation: &framework.PathOperation{Callback: func(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
						n, err := counted(ctx, req.Storage)
						if err != nil {
							return nil, err
						}
						if err := req.Storage.Put(ctx, &logical.StorageEntry{Key: "count", Value: []byte(strconv.Itoa(n + 1))}); err != nil {
							return nil, err
						}
						if d.Get("exit").(bool) {
							os.Exit(3)
						}
						return &logical.Response{Data: map[string]interface{}{"count": n + 1}}, nil
					}},
					logical.ReadOperation: &framework.PathOperation{Callback: func(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
						n, err := counted(ctx, req.Storage)
						return &logical.Response{Data: map[string]interface{}{"count": n}}, err
					}},
				},
				ExistenceCheck: func(context.Context, *logical.Request, *framework.FieldData) (bool, error) { return true, nil },
			},
			{
				// sleep answers after the given seconds, whatever its
				// request's context says: a plugin that stops answering.
				Pattern: "sleep",
				Fields:  map[string]*framework.FieldSchema{"seconds": {Type: framework.TypeInt}},
				Operations: map[logical.Operation]framework.OperationHandler{
					logical.ReadOperation: &framework.PathOperation{Callback: func(_ context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
						time.Sleep(time.Duration(d.Get("seconds").(int)) * time.Second)
						return &logical.Response{Data: map[string]interface{}{"slept": d.Get("seconds").(int)}}, nil
					}},
				},
			},
			{
				// escape tries keys that would be the catalog's or another
				// mount's if the storage were not a view of its own.
				Pattern: "escape",
				Operations: map[logical.Operation]framework.OperationHandler{
					logical.ReadOperation: &framework.PathOperation{Callback: escape},
				},
			},
		},
	}
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	return b, nil
}

func escape(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	found, refused := map[string]interface{}{}, map[string]interface{}{}
	var listed []string
	for _, prefix := range []string{"", "../", "../../", "/", "runtime/", "plugin/", "mount/", "hosted/"} {
		keys, err := req.Storage.List(ctx, prefix)
		if err != nil {
			refused["list "+prefix] = err.Error()
			continue
		}
		listed = append(listed, keys...)
	}
	for _, key := range []string{"runtime/container/secret-rt", "../runtime/container/secret-rt",
		"../../runtime/container/secret-rt", "/runtime/container/secret-rt", "mount/other"} {
		entry, err := req.Storage.Get(ctx, key)
		if err != nil {
			refused[key] = err.Error()
		} else if entry != nil {
			found[key] = string(entry.Value)
		}
	}
	return &logical.Response{Data: map[string]interface{}{"listed": listed, "found": found, "refused": refused}}, nil
}

// counted is the number of writes count applied.
func counted(ctx context.Context, s logical.Storage) (int, error) {
	e, err := s.Get(ctx, "count")
	if err != nil || e == nil {
		return 0, err
	}
	return strconv.Atoi(string(e.Value))
}
