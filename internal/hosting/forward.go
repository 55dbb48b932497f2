package hosting

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"net/rpc"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/helper/pluginutil"
	"github.com/hashicorp/vault/sdk/logical"
	vaultplugin "github.com/hashicorp/vault/sdk/plugin"
	"github.com/hashicorp/vault/sdk/plugin/pb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/reqerr"
)

// pluginGone reports whether a forwarded call failed because the plugin's
// process is gone (it exited, was killed, or its engine restarted: the
// connection is refused, reset or closing) rather than with an answer of
// the plugin's. A call whose own context ended, because the client hung up
// or its deadline passed, says nothing about the plugin: Canceled then is
// the request's, and the plugin serves on.
func pluginGone(ctx context.Context, err error, p Plugin) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	if p.Exited() || errors.Is(err, vaultplugin.ErrPluginShutdown) {
		return true
	}
	for _, e := range []error{err, errors.Unwrap(err)} {
		switch status.Code(e) {
		case codes.Unavailable, codes.Canceled:
			return true
		}
	}
	return strings.Contains(err.Error(), "transport is closing") || strings.Contains(err.Error(), "connection refused")
}

// notShutdown keeps a hosted plugin's error from reading as this plugin's
// own connection shut down: Vault takes an error whose text is exactly
// net/rpc's "connection is shut down" for a dead plugin process, reloads
// this mount and sends the request again, which would apply a write twice
// and stop every hosted container. Such an error of the hosted plugin's
// (one that uses net/rpc inside, say) is named as the hosted mount's.
func notShutdown(name string, err error) error {
	if err.Error() != rpc.ErrShutdown.Error() {
		return err
	}
	msg := "hosted mount " + name + ": " + err.Error()
	if coded := (logical.HTTPCodedError)(nil); errors.As(err, &coded) {
		return logical.CodedError(coded.Code(), msg)
	}
	return errors.New(msg)
}

// forwarded is req as the hosted plugin sees it: the path within the mount,
// and the mount point its own.
func forwarded(name, rest string, req *logical.Request) *logical.Request {
	f := *req
	f.Path = rest
	f.MountPoint = req.MountPoint + Prefix + name + "/"
	return &f
}

// Forward serves a request for a hosted mount.
func (h *Host) Forward(ctx context.Context, name, rest string, req *logical.Request) (*logical.Response, error) {
	hd, err := h.lookup(ctx, name)
	if err != nil {
		return nil, err
	}
	if req.Operation == logical.RenewOperation && req.Auth != nil {
		if err := renewable(req.Auth.InternalData, name, hd.id); err != nil {
			return nil, err
		}
	}
	f := forwarded(name, rest, req)
	var resp *logical.Response
	var pluginErr error
	began := time.Now()
	if h.checksTimedOut.take(req.ID) {
		err := hd.timeoutError(h.cfg.RequestTimeout)
		h.metrics.observe(ctx, name, req.Operation, began, err, false)
		return nil, err
	}
	err = hd.serve(ctx, req.MountPoint, func(ctx context.Context, backend logical.Backend, _ pb.BackendClient) (err error) {
		if resp, err = backend.HandleRequest(ctx, f); err != nil {
			err = notShutdown(name, err)
			pluginErr = err
			return err
		}
		if resp != nil && resp.Auth != nil {
			withAuth := *resp
			auth := *resp.Auth
			auth.InternalData = maps.Clone(auth.InternalData)
			tagAuth(&auth, hd.id)
			withAuth.Auth = &auth
			resp = &withAuth
		}
		if resp != nil && resp.Secret != nil && !leased(resp.Secret.InternalData, req.IsSnapshotReadOrList()) {
			withoutLease := *resp
			withoutLease.Secret = nil
			resp = &withoutLease
		}
		// Counted while the request is still in flight: a delete waits for
		// it, then counts.
		hd.leases.count(ctx, req.Operation, resp != nil && resp.Secret != nil)
		return nil
	})
	h.metrics.observe(ctx, name, req.Operation, began, err, (err != nil && err == pluginErr) || (err == nil && resp != nil && resp.IsError()))
	return resp, err
}

// ForwardProto is Forward for a request as Vault's protocol buffer, passed
// to the hosted plugin without being decoded into Go values and encoded
// again; the reply comes back the same way.
func (h *Host) ForwardProto(ctx context.Context, name, rest string, args *pb.HandleRequestArgs) (*pb.HandleRequestReply, error) {
	hd, err := h.lookup(ctx, name)
	if err != nil {
		return protoReply(err)
	}
	if args.Request.Operation == string(logical.RenewOperation) && args.Request.Auth != nil {
		if err := renewableProto(args.Request.Auth, name, hd.id); err != nil {
			return protoReply(err)
		}
	}
	mountPoint := args.Request.MountPoint
	args.Request.MountPoint += Prefix + name + "/"
	args.Request.Path = rest
	var reply *pb.HandleRequestReply
	var callErr error
	began := time.Now()
	if h.checksTimedOut.take(args.Request.ID) {
		err := hd.timeoutError(h.cfg.RequestTimeout)
		h.metrics.observe(ctx, name, logical.Operation(args.Request.Operation), began, err, false)
		return protoReply(err)
	}
	err = hd.serve(ctx, mountPoint, func(ctx context.Context, _ logical.Backend, client pb.BackendClient) error {
		if reply, callErr = client.HandleRequest(forwardedMetadata(ctx), args); callErr != nil {
			return callErr
		}
		if reply.Err != nil && reply.Err.ErrMsg == rpc.ErrShutdown.Error() {
			reply.Err.ErrMsg = notShutdown(name, errors.New(reply.Err.ErrMsg)).Error()
		}
		if reply.Response != nil {
			if err := tagAuthProto(reply.Response.Auth, hd.id); err != nil {
				return err
			}
		}
		issued := reply.Response != nil && reply.Response.Secret != nil
		if issued && !leasedProto(reply.Response.Secret.InternalData, args.Request.RequiresSnapshotID != "") {
			reply.Response.Secret, issued = nil, false
		}
		hd.leases.count(ctx, logical.Operation(args.Request.Operation), issued) // in flight, as in Forward
		return nil
	})
	// an error answer (kv's 400s) comes with its error
	h.metrics.observe(ctx, name, logical.Operation(args.Request.Operation), began, err, (err != nil && err == callErr) || (reply != nil && reply.Err != nil))
	if err != nil && err != callErr { // the mount's own answer (not found, failed, pending): as the SDK would send it
		return protoReply(err)
	}
	return reply, err
}

// ExistenceCheck asks the hosted plugin, so that Vault tells create from
// update for its paths as it would for the plugin mounted on its own.
func (h *Host) ExistenceCheck(ctx context.Context, name, rest string, req *logical.Request) (bool, bool, error) {
	hd, err := h.lookup(ctx, name)
	if err != nil {
		return false, false, nil // the request itself gets the 404
	}
	f := forwarded(name, rest, req)
	var checkFound, exists bool
	var checkErr error
	err = hd.serve(ctx, req.MountPoint, func(ctx context.Context, backend logical.Backend, _ pb.BackendClient) error {
		checkFound, exists, checkErr = backend.HandleExistenceCheck(ctx, f)
		if checkErr != nil {
			checkErr = notShutdown(name, checkErr)
		}
		return checkErr
	})
	if err != nil && err != checkErr {
		// The mount cannot serve (failed, pending, not starting): Vault
		// would answer this check's error as a bare 500 "internal error".
		// No check instead makes it send the write, as an update, and the
		// write gets the mount's status and reason, as a read does. A
		// check that used up the request's time makes the write answer
		// its 504 at once, rather than wait another limit, past Vault's.
		if coded := (logical.HTTPCodedError)(nil); errors.As(err, &coded) && coded.Code() == http.StatusGatewayTimeout {
			h.checksTimedOut.add(req.ID)
		}
		return false, false, nil
	}
	return checkFound, exists, err
}

// timedOutChecks are the requests whose existence check used up the request
// limit, by request ID, which Vault's write that follows it carries too.
type timedOutChecks struct {
	mu  sync.Mutex
	ids map[string]time.Time
}

// checkMemory bounds how long a timed-out check is remembered: past it, the
// write that follows has long been cancelled by Vault.
const checkMemory = 5 * time.Minute

func (c *timedOutChecks) add(id string) {
	if id == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ids == nil {
		c.ids = map[string]time.Time{}
	}
	for other, at := range c.ids {
		if time.Since(at) > checkMemory {
			delete(c.ids, other)
		}
	}
	c.ids[id] = time.Now()
}

// take reports whether the check of request id timed out, forgetting it.
func (c *timedOutChecks) take(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.ids[id]; !ok || id == "" {
		return false
	}
	delete(c.ids, id)
	return true
}

// Rollback sends Vault's periodic rollback to every hosted backend, as Vault
// sends one to every mount: their periodic functions and WAL rollbacks run,
// and a plugin that died while idle is restarted.
func (h *Host) Rollback(ctx context.Context, req *logical.Request) {
	mounts, err := h.cfg.Store.Mounts(ctx)
	if err != nil {
		h.cfg.Logger.Error("listing hosted mounts for rollback", "error", err)
		return
	}
	var wg sync.WaitGroup
	for _, m := range mounts {
		wg.Add(1)
		go func(name string) {
			defer wg.Done()
			if _, err := h.Forward(ctx, name, "", req); err != nil && !errors.Is(err, logical.ErrUnsupportedOperation) {
				h.cfg.Logger.Debug("rollback of a hosted mount", "mount", name, "error", err)
			}
		}(m.Name)
	}
	wg.Wait()
}

// forwardedMetadata is the metadata Vault sent that the hosted plugin reads
// too (snapshot and WAL index state), without gRPC's own headers and
// Vault's multiplexing ID, which is ours: the connection to the hosted
// plugin adds the hosted backend's own.
func forwardedMetadata(ctx context.Context) context.Context {
	in, _ := metadata.FromIncomingContext(ctx)
	out := metadata.MD{}
	for k, v := range in {
		if strings.HasPrefix(k, ":") || strings.HasPrefix(k, "grpc-") || k == "content-type" || k == "user-agent" ||
			k == "authority" || k == pluginutil.MultiplexingCtxKey {
			continue
		}
		out[k] = v
	}
	return metadata.NewOutgoingContext(ctx, out)
}

// protoReply is a reply carrying an error as Vault's SDK server would: a
// request error as an error response, anything else as the error itself.
func protoReply(err error) (*pb.HandleRequestReply, error) {
	resp, err := reqerr.Respond(err)
	pbResp, convErr := pb.LogicalResponseToProtoResponse(resp)
	if convErr != nil {
		return &pb.HandleRequestReply{}, convErr
	}
	return &pb.HandleRequestReply{Response: pbResp, Err: pb.ErrToProtoErr(err)}, nil
}
