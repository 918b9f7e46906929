// Package task owns the shim's containerd task API (task v3 over ttrpc): it
// answers every RPC containerd sends to the shim process, keeps the tasks'
// and processes' states, connects their stdio (package stdio) to the guest
// agent, and publishes the task events through one queue and one forwarder,
// in the order containerd expects: TaskCreate, TaskStart, (TaskOOM),
// TaskExit, TaskDelete; TaskExecAdded, TaskExecStarted, TaskExit.
//
// One shim process serves one sandbox: the micro-VM (package sandbox) is
// booted by the Create of the sandbox's task and stopped by its Delete. The
// other containers of a CRI pod (io.kubernetes.cri.container-type=container,
// io.kubernetes.cri.sandbox-id=<the sandbox>) come to the same shim and are
// created in the running VM; their Delete leaves it running.
// It must not reap processes it did not start (see package reaper), and it
// never takes a VMM's exit status for a container's: exit statuses come from
// the agent, and a VMM that ends without the agent reporting is a sandbox
// failure (its processes exit 255, and the reason is logged).
// The RPCs return native errdefs errors; they become gRPC status in one
// place, the service's ttrpc interceptor (errors.go).
package task

import (
	"context"
	"fmt"
	"sync"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/boxlite/boxlite-shim/config"
	"github.com/boxlite/boxlite-shim/reaper"
	"github.com/boxlite/boxlite-shim/runtime/agent"
	"github.com/boxlite/boxlite-shim/runtime/sandbox"
)

var (
	_     taskAPI.TTRPCTaskService = (*service)(nil)
	empty                          = &emptypb.Empty{}
)

// sandboxFailureStatus is the exit status of processes whose sandbox (VMM)
// ended without the agent reporting their exit.
const sandboxFailureStatus = 255

// failedStartStatus is the exit status of a process whose start failed.
const failedStartStatus = 255

// NewTaskService returns the shim's task service.
func NewTaskService(ctx context.Context, publisher shim.Publisher, sd shutdown.Service) (taskAPI.TTRPCTaskService, error) {
	s := &service{
		ctx:        context.WithoutCancel(ctx),
		queue:      newQueue(ctx, publisher),
		shutdown:   sd,
		reaper:     reaper.Default(),
		containers: map[string]*container{},
	}
	if address, err := shim.ReadAddress("address"); err == nil {
		sd.RegisterCallback(func(context.Context) error { return shim.RemoveSocket(address) })
	}
	sd.RegisterCallback(func(ctx context.Context) error {
		if err := s.stopSandbox(ctx); err != nil {
			log.G(ctx).WithError(err).Error("stop sandbox at shutdown")
		}
		return s.queue.close(ctx)
	})
	return s, nil
}

type service struct {
	ctx      context.Context
	queue    *queue
	shutdown shutdown.Service
	reaper   *reaper.Reaper

	// createMu makes Creates one at a time.
	createMu sync.Mutex
	// mu guards containers and sb*.
	mu         sync.Mutex
	containers map[string]*container
	sb         *sandbox.Sandbox
	sbCfg      *config.Config
	sbEvents   *agentEvents
	sbCancel   context.CancelFunc
}

// RegisterTTRPC makes the service reachable on the shim's ttrpc server.
func (s *service) RegisterTTRPC(server *ttrpc.Server) error {
	taskAPI.RegisterTTRPCTaskService(server, s)
	return nil
}

func (s *service) send(e any) { s.queue.send(e) }

// holds reports whether the shim holds container id.
func (s *service) holds(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.containers[id] != nil
}

func (s *service) container(id string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.containers[id]
	if c == nil {
		return nil, fmt.Errorf("task %q: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

func (s *service) process(id, execID string) (*container, *process, error) {
	c, err := s.container(id)
	if err != nil {
		return nil, nil, err
	}
	p, err := c.process(execID)
	if err != nil {
		return nil, nil, err
	}
	return c, p, nil
}

// agentClient is the sandbox's agent, or an error when there is none or its
// VMM has ended.
func (s *service) agentClient() (*agent.Client, error) {
	s.mu.Lock()
	sb := s.sb
	s.mu.Unlock()
	if sb == nil || sb.Agent() == nil {
		return nil, fmt.Errorf("no sandbox is running in this shim: %w", errdefs.ErrFailedPrecondition)
	}
	select {
	case <-sb.Done():
		return nil, fmt.Errorf("sandbox %s has failed: %s: %w", sb.ID, sb.ExitReason(), errdefs.ErrFailedPrecondition)
	default:
	}
	return sb.Agent(), nil
}

// containerAgent is task id and the agent of its running sandbox.
func (s *service) containerAgent(id string) (*container, *agent.Client, error) {
	c, err := s.container(id)
	if err != nil {
		return nil, nil, err
	}
	ac, err := s.agentClient()
	if err != nil {
		return nil, nil, err
	}
	return c, ac, nil
}

// stopSandbox stops the VM and cleans up after it, if one runs.
func (s *service) stopSandbox(ctx context.Context) error {
	s.mu.Lock()
	sb, cancel := s.sb, s.sbCancel
	s.mu.Unlock()
	if sb == nil {
		return nil
	}
	if err := sb.Stop(ctx); err != nil {
		return err
	}
	if cancel != nil {
		cancel()
	}
	s.mu.Lock()
	if s.sb == sb {
		s.sb, s.sbCancel = nil, nil
	}
	s.mu.Unlock()
	return nil
}

// Shutdown stops the shim once it holds no task.
func (s *service) Shutdown(ctx context.Context, r *taskAPI.ShutdownRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	n := len(s.containers)
	s.mu.Unlock()
	if n > 0 {
		return empty, nil
	}
	s.shutdown.Shutdown()
	return empty, nil
}
