package task

import (
	"context"
	"encoding/json"
	"fmt"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/boxlite/boxlite-shim/runtime/stdio"
)

// Exec adds an exec process; Start starts it.
func (s *service) Exec(ctx context.Context, r *taskAPI.ExecProcessRequest) (_ *emptypb.Empty, retErr error) {
	c, err := s.container(r.ID)
	if err != nil {
		return nil, err
	}
	if c.init.hasExited() {
		return nil, fmt.Errorf("task %s has exited: %w", r.ID, errdefs.ErrFailedPrecondition)
	}
	if r.Spec == nil {
		return nil, fmt.Errorf("exec %s: no process spec: %w", r.ExecID, errdefs.ErrInvalidArgument)
	}
	var spec specs.Process
	if err := json.Unmarshal(r.Spec.GetValue(), &spec); err != nil {
		return nil, fmt.Errorf("exec %s: process spec: %v: %w", r.ExecID, err, errdefs.ErrInvalidArgument)
	}
	c.mu.Lock()
	if _, ok := c.execs[r.ExecID]; ok {
		c.mu.Unlock()
		return nil, fmt.Errorf("exec %s of task %s: %w", r.ExecID, r.ID, errdefs.ErrAlreadyExists)
	}
	paths := stdio.Paths{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal}
	p := newExec(r.ID, r.ExecID, paths, &spec, c.init.hostPid)
	c.execs[r.ExecID] = p // reserved while the stdio opens
	c.mu.Unlock()
	defer func() {
		if retErr != nil {
			c.mu.Lock()
			delete(c.execs, r.ExecID)
			c.mu.Unlock()
		}
	}()
	pipes, err := stdio.Open(ctx, paths)
	if err != nil {
		return nil, fmt.Errorf("exec %s of task %s: %w", r.ExecID, r.ID, err)
	}
	p.setPipes(pipes)
	s.send(&eventstypes.TaskExecAdded{ContainerID: r.ID, ExecID: r.ExecID})
	return empty, nil
}

func (s *service) ResizePty(ctx context.Context, r *taskAPI.ResizePtyRequest) (*emptypb.Empty, error) {
	_, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if !p.paths.Terminal {
		return nil, fmt.Errorf("process %s of task %s has no terminal: %w", p.id(), r.ID, errdefs.ErrFailedPrecondition)
	}
	ac, err := s.agentClient()
	if err != nil {
		return nil, err
	}
	if err := ac.ResizePty(ctx, r.ID, r.ExecID, r.Width, r.Height); err != nil {
		return nil, fmt.Errorf("resize terminal of process %s of task %s: %w", p.id(), r.ID, err)
	}
	return empty, nil
}

func (s *service) CloseIO(ctx context.Context, r *taskAPI.CloseIORequest) (*emptypb.Empty, error) {
	_, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if !r.Stdin {
		return empty, nil
	}
	att := p.attached()
	if att == nil || p.hasExited() {
		return empty, nil
	}
	if err := att.CloseStdin(ctx); err != nil && !errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("close stdin of process %s of task %s: %w", p.id(), r.ID, err)
	}
	return empty, nil
}
