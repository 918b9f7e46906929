// Package task owns the shim's containerd task API (task v3 over ttrpc): it
// answers every RPC containerd sends to the shim process.
//
// This first version creates no containers yet: each RPC that would need a
// sandbox answers errdefs.ErrNotImplemented with a message that says so, and
// the lifecycle RPCs containerd uses to clean up (Delete, Connect, Shutdown)
// work, so a failed `ctr run` leaves no shim behind. It must not reap
// processes it did not start (see package reaper).
package task

import (
	"context"
	"fmt"
	"os"
	"sync"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

var _ taskAPI.TTRPCTaskService = (*service)(nil)

// errNoSandbox answers Create. Its code is FailedPrecondition, not
// Unimplemented: containerd 2.4 takes Unimplemented from Create for an API
// version mismatch and retries on task v2, which hides this message.
var errNoSandbox = fmt.Errorf("boxlite: running containers is not implemented in this build of the shim (%s): %w", errdefs.ErrNotImplemented, errdefs.ErrFailedPrecondition)

// NewTaskService returns the shim's task service.
func NewTaskService(ctx context.Context, publisher shim.Publisher, sd shutdown.Service) (taskAPI.TTRPCTaskService, error) {
	s := &service{publisher: publisher, shutdown: sd}
	sd.RegisterCallback(func(context.Context) error { return publisher.Close() })
	return s, nil
}

type service struct {
	publisher shim.Publisher
	shutdown  shutdown.Service

	mu    sync.Mutex
	tasks map[string]struct{}
}

// RegisterTTRPC makes the service reachable on the shim's ttrpc server.
func (s *service) RegisterTTRPC(server *ttrpc.Server) error {
	taskAPI.RegisterTTRPCTaskService(server, s)
	return nil
}

func notImplemented(ctx context.Context, rpc string) error {
	log.G(ctx).WithField("rpc", rpc).Debug("not implemented")
	return errgrpc.ToGRPC(errNoSandbox)
}

func notFound(id string) error {
	return errgrpc.ToGRPC(fmt.Errorf("task %q: %w", id, errdefs.ErrNotFound))
}

func (s *service) Create(ctx context.Context, r *taskAPI.CreateTaskRequest) (*taskAPI.CreateTaskResponse, error) {
	return nil, notImplemented(ctx, "Create")
}

func (s *service) Start(ctx context.Context, r *taskAPI.StartRequest) (*taskAPI.StartResponse, error) {
	return nil, notFound(r.ID)
}

func (s *service) State(ctx context.Context, r *taskAPI.StateRequest) (*taskAPI.StateResponse, error) {
	return nil, notFound(r.ID)
}

func (s *service) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	return nil, notFound(r.ID)
}

func (s *service) Pids(ctx context.Context, r *taskAPI.PidsRequest) (*taskAPI.PidsResponse, error) {
	return nil, notFound(r.ID)
}

func (s *service) Pause(ctx context.Context, r *taskAPI.PauseRequest) (*emptypb.Empty, error) {
	return nil, notFound(r.ID)
}

func (s *service) Resume(ctx context.Context, r *taskAPI.ResumeRequest) (*emptypb.Empty, error) {
	return nil, notFound(r.ID)
}

func (s *service) Checkpoint(ctx context.Context, r *taskAPI.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return nil, errgrpc.ToGRPC(fmt.Errorf("boxlite: checkpoint of a micro-VM sandbox is not supported: %w", errdefs.ErrNotImplemented))
}

func (s *service) Kill(ctx context.Context, r *taskAPI.KillRequest) (*emptypb.Empty, error) {
	return nil, notFound(r.ID)
}

func (s *service) Exec(ctx context.Context, r *taskAPI.ExecProcessRequest) (*emptypb.Empty, error) {
	return nil, notFound(r.ID)
}

func (s *service) ResizePty(ctx context.Context, r *taskAPI.ResizePtyRequest) (*emptypb.Empty, error) {
	return nil, notFound(r.ID)
}

func (s *service) CloseIO(ctx context.Context, r *taskAPI.CloseIORequest) (*emptypb.Empty, error) {
	return nil, notFound(r.ID)
}

func (s *service) Update(ctx context.Context, r *taskAPI.UpdateTaskRequest) (*emptypb.Empty, error) {
	return nil, notFound(r.ID)
}

func (s *service) Wait(ctx context.Context, r *taskAPI.WaitRequest) (*taskAPI.WaitResponse, error) {
	return nil, notFound(r.ID)
}

func (s *service) Stats(ctx context.Context, r *taskAPI.StatsRequest) (*taskAPI.StatsResponse, error) {
	return nil, notFound(r.ID)
}

func (s *service) Connect(ctx context.Context, r *taskAPI.ConnectRequest) (*taskAPI.ConnectResponse, error) {
	return &taskAPI.ConnectResponse{ShimPid: uint32(os.Getpid())}, nil
}

// Shutdown stops the shim once it holds no task; with no sandbox support yet
// it never holds one, so containerd's cleanup after a failed Create always
// ends the shim process.
func (s *service) Shutdown(ctx context.Context, r *taskAPI.ShutdownRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	n := len(s.tasks)
	s.mu.Unlock()
	if n > 0 {
		return &emptypb.Empty{}, nil
	}
	s.shutdown.Shutdown()
	return &emptypb.Empty{}, nil
}
