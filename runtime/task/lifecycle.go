package task

import (
	"context"
	"encoding/json"
	"fmt"
	"syscall"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/pkg/protobuf"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/boxlite/boxlite-shim/runtime/agent"
	"github.com/boxlite/boxlite-shim/runtime/sandbox"
)

// watchSandbox logs a VMM that ends while the sandbox is in use: the
// processes' waiters then report the failure as their exit.
func (s *service) watchSandbox(sb *sandbox.Sandbox) {
	<-sb.Done()
	if sb.Stopping() {
		return
	}
	log.G(s.ctx).WithField("sandbox", sb.ID).Errorf("sandbox failed: %s without the guest agent reporting; its tasks exit with status %d", sb.ExitReason(), sandboxFailureStatus)
	// Started processes exit through waitExit; the ones never started
	// never will: they are stopped here, so that Wait returns and they can
	// be deleted.
	now := time.Now()
	for _, p := range s.unstarted() {
		s.failedStart(p, now)
	}
}

// unstarted lists the processes, init or exec, that are created and not
// started, and marks them started so that Start refuses them from now on.
func (s *service) unstarted() []*process {
	s.mu.Lock()
	var all []*process
	for _, c := range s.containers {
		all = append(all, c.init)
		all = append(all, c.execList()...)
	}
	s.mu.Unlock()
	var out []*process
	for _, p := range all {
		if p.start() == nil {
			out = append(out, p)
		}
	}
	return out
}

// Start starts a created init or exec process.
func (s *service) Start(ctx context.Context, r *taskAPI.StartRequest) (*taskAPI.StartResponse, error) {
	t0 := time.Now()
	c, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if err := p.start(); err != nil {
		return nil, fmt.Errorf("process %s of task %s: %w", p.id(), r.ID, err)
	}

	// A sandbox that failed before Start fails the start: the process is
	// then stopped, so that it can be deleted (containerd's forced delete
	// waits for it).
	ac, err := s.agentClient()
	var pid int
	switch {
	case err != nil:
	case r.ExecID == "":
		pid, err = ac.Start(ctx, r.ID)
	default:
		if c.init.hasExited() {
			err = fmt.Errorf("task %s has exited: %w", r.ID, errdefs.ErrFailedPrecondition)
		} else {
			var att *agent.Attached
			pid, att, err = ac.Exec(ctx, r.ID, r.ExecID, p.spec, p.guestIO())
			p.attach(att)
		}
	}
	if err != nil {
		err = fmt.Errorf("start process %s of task %s: %w", p.id(), r.ID, err)
		if r.ExecID == "" {
			// As with runc, an init that failed to start has exited: the
			// task can be deleted, and its exit is published.
			log.G(ctx).WithError(err).Warn("init failed to start")
			s.failedStart(p, time.Now())
		} else {
			// An exec that failed to start is stopped: it cannot be
			// started again, only deleted, and the init's exit does not
			// wait for it.
			p.closeIO()
			if _, err := p.exit(failedStartStatus, time.Now()); err != nil {
				log.G(ctx).WithError(err).Error("recording a failed exec start")
			}
			p.markExited()
		}
		return nil, err
	}
	if err := p.run(uint32(pid)); err != nil {
		return nil, fmt.Errorf("start process %s of task %s: %w", p.id(), r.ID, err)
	}
	hostPid := p.pid(p.state())
	if r.ExecID == "" {
		s.send(&eventstypes.TaskStart{ContainerID: r.ID, Pid: hostPid})
	} else {
		s.send(&eventstypes.TaskExecStarted{ContainerID: r.ID, ExecID: r.ExecID, Pid: hostPid})
	}
	// The waiter starts after the start event is queued, so the exit event
	// follows it; the agent keeps an exit until it is waited for, so an
	// exit that raced Start is not lost.
	s.mu.Lock()
	sb := s.sb
	s.mu.Unlock()
	started := time.Now()
	if r.ExecID == "" {
		sandbox.Span(ctx, r.ID, "start", t0, started)
	}
	go s.waitExit(c, p, ac, sb, started)
	return &taskAPI.StartResponse{Pid: hostPid}, nil
}

// failedStart records the exit of an init whose start failed.
func (s *service) failedStart(p *process, at time.Time) {
	p.closeIO()
	s.exited(p, failedStartStatus, at)
}

// exited records the exit of p, queues its TaskExit, then releases its
// waiters (so that a Delete's TaskDelete follows the TaskExit).
func (s *service) exited(p *process, status uint32, at time.Time) {
	pid, err := p.exit(status, at)
	if err != nil {
		log.G(s.ctx).WithError(err).WithField("id", p.containerID).WithField("exec", p.execID).Error("process exit")
		return
	}
	s.send(&eventstypes.TaskExit{
		ContainerID: p.containerID,
		ID:          p.id(),
		Pid:         pid,
		ExitStatus:  status,
		ExitedAt:    protobuf.ToTimestamp(at),
	})
	p.markExited()
}

// waitExit waits for a started process to exit, drains its output, and
// queues TaskExit. For init, the container's exec processes' exits go first.
func (s *service) waitExit(c *container, p *process, ac *agent.Client, sb *sandbox.Sandbox, started time.Time) {
	ctx := s.ctx
	st, err := ac.Wait(ctx, p.containerID, p.execID)
	status, exitedAt := st.Status, st.ExitedAt
	if err != nil {
		reason := err.Error()
		if sb != nil {
			select {
			case <-sb.Done():
				reason = sb.ExitReason()
			case <-time.After(5 * time.Second):
			}
		}
		l := log.G(ctx).WithField("id", p.containerID).WithField("exec", p.execID)
		if sb != nil && sb.Stopping() {
			l.Warnf("process %s was still running when its sandbox was stopped; reporting exit status %d", p.id(), sandboxFailureStatus)
		} else {
			l.Errorf("the guest agent did not report the exit of process %s (%s): sandbox failure, reporting exit status %d", p.id(), reason, sandboxFailureStatus)
		}
		status, exitedAt = sandboxFailureStatus, time.Now()
	} else {
		s.mu.Lock()
		evs := s.sbEvents
		s.mu.Unlock()
		if evs != nil {
			evs.waitSeen(st.EventsSeq) // TaskOOM before TaskExit
		}
	}
	p.drainIO()
	if p.execID == "" {
		kernelHint(ctx, sb, p, status)
		// An init's exit is the container's last.
		for _, e := range c.execList() {
			if e.state().started() {
				<-e.exited
			}
		}
	}
	if p.execID == "" {
		sandbox.Span(ctx, p.containerID, "run", started, time.Now()) // the workload, until its exit is reported
	}
	s.exited(p, status, exitedAt)
}

// Delete removes an exited (or never started) process. Deleting the init
// removes the container; the sandbox's own container's also stops the VM.
func (s *service) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	if r.ExecID == "" {
		t0 := time.Now()
		defer func() { sandbox.Span(ctx, r.ID, "delete", t0, time.Now()) }()
	}
	c, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	started := p.state().started()
	if started && !p.hasExited() {
		return nil, fmt.Errorf("process %s of task %s is running; kill it first: %w", p.id(), r.ID, errdefs.ErrFailedPrecondition)
	}
	ac, acErr := s.agentClient()
	if r.ExecID != "" {
		if acErr == nil {
			var err error
			if started {
				err = ac.DeleteProcess(ctx, r.ID, r.ExecID)
			}
			if err != nil && !errdefs.IsNotFound(err) {
				return nil, fmt.Errorf("delete exec %s of task %s: %w", r.ExecID, r.ID, err)
			}
		}
		p.closeIO()
		if !started {
			if err := p.discard(time.Now()); err != nil {
				return nil, fmt.Errorf("delete exec %s of task %s: %w", r.ExecID, r.ID, err)
			}
		}
		c.mu.Lock()
		delete(c.execs, r.ExecID)
		c.mu.Unlock()
		return deleteResponse(p), nil
	}

	if acErr == nil {
		if err := ac.Delete(ctx, r.ID, !started); err != nil && !errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("delete task %s in the guest: %w", r.ID, err)
		}
	}
	p.closeIO()
	c.mu.Lock()
	for _, e := range c.execs {
		e.closeIO()
	}
	c.mu.Unlock()
	if !started {
		// A Wait on the never started task returns.
		if err := p.discard(time.Now()); err != nil {
			return nil, fmt.Errorf("delete task %s: %w", r.ID, err)
		}
	}
	s.mu.Lock()
	sb := s.sb
	s.mu.Unlock()
	if sb != nil && sb.ID != r.ID {
		// A container that joined the pod: the VM stays.
		if err := sb.UnmountRootfs(r.ID); err != nil {
			return nil, fmt.Errorf("delete task %s: %w", r.ID, err)
		}
	} else if err := s.stopSandbox(ctx); err != nil {
		return nil, fmt.Errorf("delete task %s: %w", r.ID, err)
	}
	s.mu.Lock()
	delete(s.containers, r.ID)
	s.mu.Unlock()
	st := p.state()
	s.send(&eventstypes.TaskDelete{
		ContainerID: r.ID,
		ID:          r.ID,
		Pid:         p.pid(st),
		ExitStatus:  st.exitStatus,
		ExitedAt:    protobuf.ToTimestamp(st.exitedAt),
	})
	return deleteResponse(p), nil
}

func deleteResponse(p *process) *taskAPI.DeleteResponse {
	st := p.state()
	return &taskAPI.DeleteResponse{Pid: p.pid(st), ExitStatus: st.exitStatus, ExitedAt: protobuf.ToTimestamp(st.exitedAt)}
}

func (s *service) Pause(ctx context.Context, r *taskAPI.PauseRequest) (*emptypb.Empty, error) {
	return s.freeze(ctx, r.ID, "pause", (*agent.Client).Pause, (*procState).pause, &eventstypes.TaskPaused{ContainerID: r.ID})
}

func (s *service) Resume(ctx context.Context, r *taskAPI.ResumeRequest) (*emptypb.Empty, error) {
	return s.freeze(ctx, r.ID, "resume", (*agent.Client).Resume, (*procState).resume, &eventstypes.TaskResumed{ContainerID: r.ID})
}

// freeze pauses or resumes task id in the guest (call), then makes the
// init's move and publishes the event. A move the init's state refuses (a
// task not running, or not paused) is refused before the guest is asked.
func (s *service) freeze(ctx context.Context, id, verb string, call func(*agent.Client, context.Context, string) error, move func(*procState) error, event any) (*emptypb.Empty, error) {
	c, ac, err := s.containerAgent(id)
	if err != nil {
		return nil, err
	}
	if err := c.init.check(move); err != nil {
		return nil, fmt.Errorf("%s task %s: %w", verb, id, err)
	}
	if err := call(ac, ctx, id); err != nil {
		return nil, fmt.Errorf("%s task %s: %w", verb, id, err)
	}
	if err := c.init.apply(move); err != nil {
		// The init exited while the guest froze or thawed it.
		return nil, fmt.Errorf("%s task %s: %w", verb, id, err)
	}
	s.send(event)
	return empty, nil
}

func (s *service) Checkpoint(ctx context.Context, r *taskAPI.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return nil, fmt.Errorf("boxlite: checkpoint of a micro-VM sandbox is not supported: %w", errdefs.ErrNotImplemented)
}

func (s *service) Kill(ctx context.Context, r *taskAPI.KillRequest) (*emptypb.Empty, error) {
	_, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if p.hasExited() {
		return nil, fmt.Errorf("process %s of task %s: process already finished: %w", p.id(), r.ID, errdefs.ErrNotFound)
	}
	ac, err := s.agentClient()
	if err != nil {
		return nil, err
	}
	if err := ac.Signal(ctx, r.ID, r.ExecID, syscall.Signal(r.Signal), r.All); err != nil {
		return nil, fmt.Errorf("signal %d to process %s of task %s: %w", r.Signal, p.id(), r.ID, err)
	}
	return empty, nil
}

// Update applies new resource limits in the guest (what the guest's cgroup
// v2 controllers can honour; anything else is an error from the agent).
func (s *service) Update(ctx context.Context, r *taskAPI.UpdateTaskRequest) (*emptypb.Empty, error) {
	if _, err := s.container(r.ID); err != nil {
		return nil, err
	}
	if r.Resources == nil {
		return nil, fmt.Errorf("update task %s: no resources given: %w", r.ID, errdefs.ErrInvalidArgument)
	}
	var res specs.LinuxResources
	if err := json.Unmarshal(r.Resources.GetValue(), &res); err != nil {
		return nil, fmt.Errorf("update task %s: resources of type %s must be OCI LinuxResources: %v: %w", r.ID, r.Resources.GetTypeUrl(), err, errdefs.ErrInvalidArgument)
	}
	ac, err := s.agentClient()
	if err != nil {
		return nil, err
	}
	if err := ac.Update(ctx, r.ID, &res); err != nil {
		return nil, fmt.Errorf("update task %s: %w", r.ID, err)
	}
	return empty, nil
}

func (s *service) Wait(ctx context.Context, r *taskAPI.WaitRequest) (*taskAPI.WaitResponse, error) {
	_, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if !p.state().started() && !p.hasExited() {
		// containerd waits on created tasks too: the exit comes after Start.
		log.G(ctx).WithField("id", r.ID).WithField("exec", r.ExecID).Debug("wait on a process not started yet")
	}
	if err := p.wait(ctx); err != nil {
		return nil, err
	}
	st := p.state()
	return &taskAPI.WaitResponse{ExitStatus: st.exitStatus, ExitedAt: protobuf.ToTimestamp(st.exitedAt)}, nil
}
