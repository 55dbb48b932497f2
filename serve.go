package runtimecatalog

import (
	"context"
	"crypto/tls"
	"math"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/vault/sdk/helper/pluginutil"
	"github.com/hashicorp/vault/sdk/logical"
	vaultplugin "github.com/hashicorp/vault/sdk/plugin"
	"github.com/hashicorp/vault/sdk/plugin/pb"
	"google.golang.org/grpc"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/hosting"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// Serve serves the plugin to Vault as the SDK's ServeMultiplex does, with
// one addition: a request for a hosted mount is passed to its plugin as the
// protocol buffer it arrived as. Through the SDK's own server it would be
// decoded into Go maps (its data through JSON) and encoded again, and the
// response the same way back: twice the work of the hop it adds.
func Serve(tlsProvider func() (*tls.Config, error)) error {
	logger := hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: os.Stderr, JSONFormat: true})
	backendPlugin := func(multiplexed bool) plugin.PluginSet {
		return plugin.PluginSet{"backend": &vaultplugin.GRPCBackendPlugin{
			Factory: Factory, MultiplexingSupport: multiplexed, Logger: logger,
		}}
	}
	if err := pluginutil.OptionallyEnableMlock(); err != nil {
		return err
	}
	go watchParent(os.Getppid(), time.Second)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  vaultplugin.HandshakeConfig,
		VersionedPlugins: map[int]plugin.PluginSet{3: backendPlugin(false), 4: backendPlugin(false), 5: backendPlugin(true)},
		Logger:           logger,
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			opts = append(opts, grpc.MaxRecvMsgSize(math.MaxInt32), grpc.MaxSendMsgSize(math.MaxInt32),
				grpc.ChainUnaryInterceptor(passHostedRequests))
			return plugin.DefaultGRPCServer(opts)
		},
		TLSProvider: tlsProvider,
	})
	// Vault stopped the plugin, after cleaning every mount up: the socket
	// directories' root goes too (a killed process leaves it to the next).
	os.RemoveAll(runtime.OwnSocketRoot())
	return nil
}

// watchParent ends this process cleanly once the Vault that started it is
// gone. A Vault killed with SIGKILL (a crashed node, a Raft leader lost in a
// failover) never stops its plugins: without this, this process would live
// on, adopted by init, with its hosted containers running and nobody to
// serve; the next active node starts its own. Polling the parent pid is
// what Linux offers that survives Vault's threads coming and going
// (PR_SET_PDEATHSIG fires when the forking thread exits, not the process).
func watchParent(parent int, every time.Duration) {
	for os.Getppid() == parent {
		time.Sleep(every)
	}
	// Standard error was a pipe to Vault: a log line would now kill this
	// process with SIGPIPE halfway through stopping its containers.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	backends.Range(func(b, _ any) bool {
		wg.Add(1)
		go func() { defer wg.Done(); b.(*backend).clean(ctx) }()
		return true
	})
	wg.Wait()
	os.RemoveAll(runtime.OwnSocketRoot())
	os.Exit(0)
}

// backends are this process's live backends, multiplexed or not, for
// watchParent to stop.
var backends sync.Map // *backend -> struct{}

// instances are the backends of this process by the multiplexing ID Vault
// set them up with, so a request can be matched to its mount of ours.
var instances sync.Map // string -> *backend

const handleRequestMethod = "/pb.Backend/HandleRequest"

// passHostedRequests sends a request under mounts/NAME/ straight to the
// hosted plugin; every other call goes to the SDK's server.
func passHostedRequests(ctx context.Context, req interface{}, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (interface{}, error) {
	if info.FullMethod != handleRequestMethod {
		return handler(ctx, req)
	}
	args, ok := req.(*pb.HandleRequestArgs)
	if !ok || args.Request == nil || wrappedList(args.Request) {
		return handler(ctx, req) // a wrapped list is made wrappable by HandleRequest
	}
	name, rest, hosted := hosting.SplitPath(args.Request.Path)
	if !hosted {
		return handler(ctx, req)
	}
	id, err := pluginutil.GetMultiplexIDFromContext(ctx)
	if err != nil {
		return handler(ctx, req)
	}
	b, found := instances.Load(id)
	if !found || b.(*backend).standby {
		return handler(ctx, req) // a standby's HandleRequest forwards it
	}
	return b.(*backend).host.ForwardProto(ctx, name, rest, args)
}

func wrappedList(r *pb.Request) bool {
	return r.Operation == string(logical.ListOperation) && r.WrapInfo != nil && r.WrapInfo.TTL > 0
}
