package task

import (
	"context"

	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
)

var _ shim.TTRPCServerUnaryOptioner = (*service)(nil)

// UnaryServerInterceptor is where the task API's errors become gRPC
// status, once, as they leave the shim: the RPCs and their helpers return
// native errdefs errors. pkg/shim chains the interceptor of every plugin
// that has one (shim.TTRPCServerUnaryOptioner) into the shim's ttrpc
// server, so it sees every RPC of the server; an error that is already a
// gRPC status passes unchanged.
func (s *service) UnaryServerInterceptor() ttrpc.UnaryServerInterceptor {
	return toGRPC
}

func toGRPC(ctx context.Context, unmarshal ttrpc.Unmarshaler, _ *ttrpc.UnaryServerInfo, method ttrpc.Method) (any, error) {
	resp, err := method(ctx, unmarshal)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return resp, nil
}
