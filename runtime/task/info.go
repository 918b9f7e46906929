package task

import (
	"context"
	"fmt"
	"os"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/pkg/protobuf"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"

	"github.com/boxlite/boxlite-shim/runtime/agent"
	"github.com/boxlite/boxlite-shim/runtime/agent/api"
)

func (s *service) State(ctx context.Context, r *taskAPI.StateRequest) (*taskAPI.StateResponse, error) {
	c, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	st := p.state()
	resp := &taskAPI.StateResponse{
		ID:         p.id(),
		Bundle:     c.bundle,
		Pid:        p.pid(st),
		Status:     st.status(),
		Stdin:      p.paths.Stdin,
		Stdout:     p.paths.Stdout,
		Stderr:     p.paths.Stderr,
		Terminal:   p.paths.Terminal,
		ExitStatus: st.exitStatus,
		ExecID:     r.ExecID,
	}
	if !st.exitedAt.IsZero() {
		resp.ExitedAt = protobuf.ToTimestamp(st.exitedAt)
	}
	return resp, nil
}

// Pids lists the container's processes as the guest sees them: guest PIDs.
// Each one's info is a ProcessInfo (a type ctr decodes) naming the host
// process that runs it, the VMM, with the exec's ProcessDetails as its own
// info for an exec process.
func (s *service) Pids(ctx context.Context, r *taskAPI.PidsRequest) (*taskAPI.PidsResponse, error) {
	c, err := s.container(r.ID)
	if err != nil {
		return nil, err
	}
	procs, err := askAgent(s, r.ID, "pids", func(ac *agent.Client) ([]*api.ProcessInfo, error) { return ac.Pids(ctx, r.ID) })
	if err != nil {
		return nil, err
	}
	resp := &taskAPI.PidsResponse{}
	for _, pr := range procs {
		host := &task.ProcessInfo{Pid: c.init.hostPid}
		if pr.ExecId != "" {
			a, err := typeurl.MarshalAnyToProto(&options.ProcessDetails{ExecID: pr.ExecId})
			if err != nil {
				return nil, err
			}
			host.Info = a
		}
		a, err := typeurl.MarshalAnyToProto(host)
		if err != nil {
			return nil, err
		}
		resp.Processes = append(resp.Processes, &task.ProcessInfo{Pid: pr.Pid, Info: a})
	}
	return resp, nil
}

func (s *service) Stats(ctx context.Context, r *taskAPI.StatsRequest) (*taskAPI.StatsResponse, error) {
	st, err := askAgent(s, r.ID, "stats", func(ac *agent.Client) (*api.StatsResponse, error) { return ac.Stats(ctx, r.ID) })
	if err != nil {
		return nil, err
	}
	if len(st.Unavailable) > 0 {
		log.G(ctx).WithField("id", r.ID).Debugf("stats not available from the guest: %v", st.Unavailable)
	}
	a, err := typeurl.MarshalAnyToProto(metrics(st))
	if err != nil {
		return nil, err
	}
	return &taskAPI.StatsResponse{Stats: a}, nil
}

func (s *service) Connect(ctx context.Context, r *taskAPI.ConnectRequest) (*taskAPI.ConnectResponse, error) {
	resp := &taskAPI.ConnectResponse{ShimPid: uint32(os.Getpid())}
	if c, err := s.container(r.ID); err == nil {
		resp.TaskPid = c.init.pid(c.init.state())
	}
	return resp, nil
}

// askAgent asks the agent of task id's sandbox for what (call).
func askAgent[T any](s *service, id, what string, call func(*agent.Client) (T, error)) (T, error) {
	var none T
	_, ac, err := s.containerAgent(id)
	if err != nil {
		return none, err
	}
	v, err := call(ac)
	if err != nil {
		return none, fmt.Errorf("%s of task %s: %w", what, id, err)
	}
	return v, nil
}
