package task

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/boxlite/boxlite-shim/runtime/agent"
	"github.com/boxlite/boxlite-shim/runtime/kernelhint"
	"github.com/boxlite/boxlite-shim/runtime/stdio"
)

// container is one task: its init process and its exec processes.
type container struct {
	id     string
	bundle string
	init   *process

	mu    sync.Mutex
	execs map[string]*process
}

func (c *container) process(execID string) (*process, error) {
	if execID == "" {
		return c.init, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.execs[execID]
	if p == nil {
		return nil, fmt.Errorf("exec %q of task %q: %w", execID, c.id, errdefs.ErrNotFound)
	}
	return p, nil
}

// execList is the container's exec processes.
func (c *container) execList() []*process {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*process, 0, len(c.execs))
	for _, e := range c.execs {
		out = append(out, e)
	}
	return out
}

// process is the init or an exec process of a container, as the shim sees
// it: the agent runs it. Its state and stdio are reached through its
// methods, which hold mu.
type process struct {
	containerID string
	execID      string
	paths       stdio.Paths
	spec        *specs.Process // exec processes only
	// hostPid is the host process that runs it: the sandbox's VMM (see
	// pid).
	hostPid uint32
	// tail is the end of an init's output (nil for exec processes), for
	// kernelHint.
	tail *kernelhint.Tail

	mu       sync.Mutex
	pipes    *stdio.Pipes
	att      *agent.Attached
	st       procState
	exited   chan struct{} // closed once the exit is known and TaskExit queued
	exitOnce sync.Once
}

func newProcess(containerID, execID string, paths stdio.Paths, hostPid uint32) *process {
	return &process{containerID: containerID, execID: execID, paths: paths, hostPid: hostPid, exited: make(chan struct{})}
}

// newInit is the init of a container the agent created as guest pid, with
// its stdio, in the sandbox whose VMM is host process hostPid.
func newInit(containerID string, paths stdio.Paths, pipes *stdio.Pipes, att *agent.Attached, pid, hostPid uint32) *process {
	p := newProcess(containerID, "", paths, hostPid)
	p.pipes, p.att, p.st.pid = pipes, att, pid
	return p
}

// newExec is an exec process added by Exec; its stdio opens later
// (setPipes).
func newExec(containerID, execID string, paths stdio.Paths, spec *specs.Process, hostPid uint32) *process {
	p := newProcess(containerID, execID, paths, hostPid)
	p.spec = spec
	return p
}

// pid is the PID the task API reports for the process, in state st: the
// host PID that stands for it, its sandbox's VMM's (containerd and CRI
// take a task's PID for a host process: /proc/<pid>/ns/... for the pod's
// later containers, nsenter -t), or 0 while it has no process (an exec not
// started, one whose start failed). The guest's PID (st.pid) is the
// guest's view: Pids reports it.
func (p *process) pid(st procState) uint32 {
	if st.pid == 0 {
		return 0
	}
	return p.hostPid
}

// id is the process's id as containerd names it: the exec id, or the
// container id for init.
func (p *process) id() string {
	if p.execID == "" {
		return p.containerID
	}
	return p.execID
}

// state is a copy of the process's state.
func (p *process) state() procState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}

// apply makes move on the process's state.
func (p *process) apply(move func(*procState) error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return move(&p.st)
}

// check says whether move would be allowed now, changing nothing.
func (p *process) check(move func(*procState) error) error {
	st := p.state()
	return move(&st)
}

// start marks the process as being started (procState.start).
func (p *process) start() error { return p.apply((*procState).start) }

// run records that the agent started the process as pid.
func (p *process) run(pid uint32) error {
	return p.apply(func(st *procState) error { return st.run(pid) })
}

// exit records the process's exit and returns its pid (as the task API
// reports it). The caller queues TaskExit, then calls markExited.
func (p *process) exit(status uint32, at time.Time) (uint32, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.st.exit(status, at); err != nil {
		return 0, err
	}
	return p.pid(p.st), nil
}

// discard stops a process that was never started, at its deletion, and
// releases its waiters.
func (p *process) discard(at time.Time) error {
	if err := p.apply(func(st *procState) error { return st.discard(at) }); err != nil {
		return err
	}
	p.markExited()
	return nil
}

func (p *process) markExited() { p.exitOnce.Do(func() { close(p.exited) }) }

func (p *process) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// wait blocks until the process has exited or ctx ends.
func (p *process) wait(ctx context.Context) error {
	select {
	case <-p.exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// setPipes gives an exec process the stdio Exec opened for it.
func (p *process) setPipes(pipes *stdio.Pipes) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pipes = pipes
}

// guestIO is the process's stdio as the agent takes it.
func (p *process) guestIO() agent.IO {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pipes.IO()
}

// attach records the agent's stdio streams of the process.
func (p *process) attach(att *agent.Attached) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.att = att
}

// streams is the shim's ends of the process's stdio: the agent's streams
// (nil until attached) and the pipes (nil until opened).
func (p *process) streams() (*agent.Attached, *stdio.Pipes) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.att, p.pipes
}

// attached is the agent's stdio streams of the process, or nil.
func (p *process) attached() *agent.Attached {
	att, _ := p.streams()
	return att
}

// drainIO waits until the process's stdout and stderr are copied out in
// full, then closes the shim's ends of its stdio.
func (p *process) drainIO() { p.endIO((*agent.Attached).Wait) }

// closeIO closes the shim's ends of the process's stdio.
func (p *process) closeIO() { p.endIO((*agent.Attached).Close) }

// endIO ends the agent's streams of the process with end, then closes the
// shim's pipes.
func (p *process) endIO(end func(*agent.Attached)) {
	att, pipes := p.streams()
	if att != nil {
		end(att)
	}
	if pipes != nil {
		pipes.Close()
	}
}
