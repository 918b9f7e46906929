package task

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/boxlite/boxlite-shim/runtime/agent"
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

// process is the init or an exec process of a container, as the shim sees
// it: the agent runs it.
type process struct {
	containerID string
	execID      string
	paths       stdio.Paths
	spec        *specs.Process // exec processes only

	mu         sync.Mutex
	pipes      *stdio.Pipes
	att        *agent.Attached
	pid        uint32
	status     task.Status
	exitStatus uint32
	exitedAt   time.Time
	started    bool
	exited     chan struct{} // closed once the exit is known and TaskExit queued
	exitOnce   sync.Once
}

func (p *process) markExited() { p.exitOnce.Do(func() { close(p.exited) }) }

func newProcess(containerID, execID string, paths stdio.Paths) *process {
	return &process{containerID: containerID, execID: execID, paths: paths, status: task.Status_CREATED, exited: make(chan struct{})}
}

// id is the process's id as containerd names it: the exec id, or the
// container id for init.
func (p *process) id() string {
	if p.execID == "" {
		return p.containerID
	}
	return p.execID
}

func (p *process) state() (task.Status, uint32, uint32, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status, p.pid, p.exitStatus, p.exitedAt
}

func (p *process) setStatus(st task.Status) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.status != task.Status_STOPPED {
		p.status = st
	}
}

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

// closeIO closes the shim's ends of the process's stdio.
func (p *process) closeIO() {
	p.mu.Lock()
	pipes, att := p.pipes, p.att
	p.mu.Unlock()
	if att != nil {
		att.Close()
	}
	if pipes != nil {
		pipes.Close()
	}
}
