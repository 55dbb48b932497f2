package runtime

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
)

// A request that may have reached a plugin is never sent to it again: it
// may have been applied. Only a call that provably never left this process
// may be; a SendRecord tells which. A call is taken to have left unless its
// connection says otherwise, so a path that records nothing is never sent
// twice.

// SendRecord records, for the calls made under one context, whether any of
// them may have reached the plugin.
type SendRecord struct {
	calls  atomic.Int32 // calls made under it
	unsent atomic.Int32 // of those, the ones that provably never left
}

type sendRecordKey struct{}

// RecordSends returns a context whose calls to a plugin are recorded in
// the returned SendRecord.
func RecordSends(ctx context.Context) (context.Context, *SendRecord) {
	rec := &SendRecord{}
	return context.WithValue(ctx, sendRecordKey{}, rec), rec
}

// MayHaveReached reports whether a call made under the record may have
// reached the plugin: true unless every call made was refused before it
// left (no connection, a connection already closed). No call at all is
// taken as one that may have left: the request's path said nothing.
func (s *SendRecord) MayHaveReached() bool {
	calls := s.calls.Load()
	return calls == 0 || s.unsent.Load() < calls
}

// NotSent records, for ctx's SendRecord, a call that was refused before it
// left this process. Engines' connections call it; so does a fake plugin.
func NotSent(ctx context.Context) {
	if rec, ok := ctx.Value(sendRecordKey{}).(*SendRecord); ok {
		rec.calls.Add(1)
		rec.unsent.Add(1)
	}
}

// sent records a call that may have left.
func sent(ctx context.Context) {
	if rec, ok := ctx.Value(sendRecordKey{}).(*SendRecord); ok {
		rec.calls.Add(1)
	}
}

// invokeRecorded makes a unary call and records whether it may have
// reached the plugin: gRPC fills in the peer only for a call that got a
// stream on a connection, so one without a peer never sent a byte of its
// request.
func invokeRecorded(ctx context.Context, invoke func(opts ...grpc.CallOption) error, opts []grpc.CallOption) error {
	if ctx.Value(sendRecordKey{}) == nil {
		return invoke(opts...)
	}
	var p peer.Peer
	err := invoke(append(opts, grpc.Peer(&p))...)
	if err != nil && p.Addr == nil && p.LocalAddr == nil && p.AuthInfo == nil {
		NotSent(ctx)
	} else {
		sent(ctx)
	}
	return err
}
