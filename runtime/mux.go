package runtime

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/vault/sdk/helper/pluginutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// The one connection to a multiplexed plugin, seen through each mount's
// multiplexing ID, as Vault's catalog sees it.

// muxClient is the pluginutil.PluginClient that Vault's SDK dispenses a
// backend from: the shared connection, seen through one mount's ID.
type muxClient struct {
	plugin.ClientProtocol
	conn muxConn
}

func (c *muxClient) Conn() grpc.ClientConnInterface { return c.conn }

// Reload is what a backend's Cleanup calls on a plugin reload; restarting is
// the owner's business here.
func (c *muxClient) Reload() error { return nil }

// Close is what a backend's Cleanup calls; the container is shared, so it
// stays until its owner calls Stop.
func (c *muxClient) Close() error { return nil }

// muxConn adds a multiplexing ID to every call, as Vault's plugin catalog
// does for each mount of a multiplexed plugin.
type muxConn struct {
	*grpc.ClientConn
	id          string
	maxResponse int
}

func (c muxConn) Invoke(ctx context.Context, method string, args, reply interface{}, opts ...grpc.CallOption) error {
	ctx = metadata.AppendToOutgoingContext(ctx, pluginutil.MultiplexingCtxKey, c.id)
	if c.maxResponse > 0 {
		// Last, so it wins over the SDK's own per-call MaxInt32.
		opts = append(opts, grpc.MaxCallRecvMsgSize(c.maxResponse))
	}
	return invokeRecorded(ctx, func(opts ...grpc.CallOption) error {
		return c.ClientConn.Invoke(ctx, method, args, reply, opts...)
	}, opts)
}

func (c muxConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	ctx = metadata.AppendToOutgoingContext(ctx, pluginutil.MultiplexingCtxKey, c.id)
	return c.ClientConn.NewStream(ctx, desc, method, opts...)
}
