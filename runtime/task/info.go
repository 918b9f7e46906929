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
		Pid:        st.pid,
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

func (s *service) Pids(ctx context.Context, r *taskAPI.PidsRequest) (*taskAPI.PidsResponse, error) {
	_, ac, err := s.containerAgent(r.ID)
	if err != nil {
		return nil, err
	}
	procs, err := ac.Pids(ctx, r.ID)
	if err != nil {
		return nil, fmt.Errorf("pids of task %s: %w", r.ID, err)
	}
	resp := &taskAPI.PidsResponse{}
	for _, pr := range procs {
		pi := &task.ProcessInfo{Pid: pr.Pid}
		if pr.ExecId != "" {
			a, err := typeurl.MarshalAnyToProto(&options.ProcessDetails{ExecID: pr.ExecId})
			if err != nil {
				return nil, err
			}
			pi.Info = a
		}
		resp.Processes = append(resp.Processes, pi)
	}
	return resp, nil
}

func (s *service) Stats(ctx context.Context, r *taskAPI.StatsRequest) (*taskAPI.StatsResponse, error) {
	_, ac, err := s.containerAgent(r.ID)
	if err != nil {
		return nil, err
	}
	st, err := ac.Stats(ctx, r.ID)
	if err != nil {
		return nil, fmt.Errorf("stats of task %s: %w", r.ID, err)
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
		resp.TaskPid = c.init.state().pid
	}
	return resp, nil
}
