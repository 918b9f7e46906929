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
package task

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/protobuf"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/boxlite/boxlite-shim/config"
	"github.com/boxlite/boxlite-shim/reaper"
	"github.com/boxlite/boxlite-shim/runtime/agent"
	"github.com/boxlite/boxlite-shim/runtime/agent/api"
	"github.com/boxlite/boxlite-shim/runtime/sandbox"
	"github.com/boxlite/boxlite-shim/runtime/stdio"
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

func (s *service) container(id string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.containers[id]
	if c == nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("task %q: %w", id, errdefs.ErrNotFound))
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
		return nil, nil, errgrpc.ToGRPC(err)
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

// containerAgent is task id and the agent of its running sandbox, with
// errors ready for the task API.
func (s *service) containerAgent(id string) (*container, *agent.Client, error) {
	c, err := s.container(id)
	if err != nil {
		return nil, nil, err
	}
	ac, err := s.agentClient()
	if err != nil {
		return nil, nil, errgrpc.ToGRPC(err)
	}
	return c, ac, nil
}

func readSpec(bundle string) (*specs.Spec, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("read bundle spec: %w", err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, fmt.Errorf("parse %s: %v: %w", filepath.Join(bundle, "config.json"), err, errdefs.ErrInvalidArgument)
	}
	return &spec, nil
}

// createError maps an error of Create for containerd. Unimplemented must not
// come back from Create: containerd 2.4 takes it for an API mismatch and
// retries on task v2, which hides the message.
func createError(err error) error {
	if errdefs.IsNotImplemented(err) {
		err = fmt.Errorf("%s: %w", err.Error(), errdefs.ErrFailedPrecondition)
	}
	return errgrpc.ToGRPC(fmt.Errorf("boxlite: create: %w", err))
}

// Create boots the sandbox's VM and creates the container in it, or, for a
// container of a CRI pod whose sandbox runs in this shim, creates it in the
// running VM.
func (s *service) Create(ctx context.Context, r *taskAPI.CreateTaskRequest) (_ *taskAPI.CreateTaskResponse, retErr error) {
	if r.Checkpoint != "" {
		return nil, createError(fmt.Errorf("restoring from a checkpoint: %w", errdefs.ErrNotImplemented))
	}
	spec, err := readSpec(r.Bundle)
	if err != nil {
		return nil, createError(err)
	}
	s.createMu.Lock()
	defer s.createMu.Unlock()
	s.mu.Lock()
	sb, exists := s.sb, s.containers[r.ID] != nil
	n := len(s.containers)
	s.mu.Unlock()
	if exists {
		return nil, createError(fmt.Errorf("task %s: %w", r.ID, errdefs.ErrAlreadyExists))
	}
	ctype := spec.Annotations[sandbox.AnnotationContainerType]
	if sb != nil || n > 0 {
		return s.join(ctx, r, spec, sb)
	}
	if ctype == sandbox.ContainerTypeContainer {
		return nil, createError(fmt.Errorf("container %s of pod %s: the pod's sandbox does not run in this shim (create the pod's sandbox first): %w", r.ID, spec.Annotations[sandbox.AnnotationSandboxID], errdefs.ErrFailedPrecondition))
	}

	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, createError(err)
	}
	cfg, err := config.LoadFromOptions(r.Options)
	if err != nil {
		return nil, createError(fmt.Errorf("configuration: %w", err))
	}
	netns, err := sandboxNetNS(r.ID, spec, ctype == sandbox.ContainerTypeSandbox)
	if err != nil {
		return nil, createError(err)
	}
	sb, err = sandbox.Prepare(ctx, sandbox.Options{
		Namespace: ns, ID: r.ID, Config: cfg, Annotations: spec.Annotations, Bundle: r.Bundle, Reaper: s.reaper, NetNS: netns,
		CgroupsPath: podCgroupsPath(spec, ctype),
	})
	if err != nil {
		return nil, createError(err)
	}
	defer func() {
		if retErr != nil {
			if err := sb.Stop(context.WithoutCancel(ctx)); err != nil {
				log.G(ctx).WithError(err).Error("cleaning up after a failed create")
			}
		}
	}()
	if err := guestSpec(r.ID, spec, 0); err != nil {
		return nil, createError(err)
	}
	paths, pipes, rootfs, err := containerFiles(ctx, r, spec, sb)
	if err != nil {
		return nil, createError(err)
	}
	defer func() {
		if retErr != nil {
			pipes.Close()
		}
	}()
	if err := sb.Boot(ctx); err != nil {
		return nil, createError(err)
	}
	res, att, err := sb.Agent().Create(ctx, r.ID, spec, rootfs, pipes.IO())
	if err != nil {
		return nil, createError(fmt.Errorf("task %s: creating the container in the guest: %w", r.ID, err))
	}
	c := newContainer(ctx, r, paths, pipes, att, res)

	evCtx, cancel := context.WithCancel(s.ctx)
	evs := newAgentEvents()
	s.mu.Lock()
	s.sb, s.sbEvents, s.sbCancel, s.sbCfg = sb, evs, cancel, cfg
	s.containers[r.ID] = c
	s.mu.Unlock()
	go evs.follow(evCtx, sb.Agent(), s.queue)
	go s.watchSandbox(sb)

	s.sendCreate(r, res.Pid)
	return &taskAPI.CreateTaskResponse{Pid: res.Pid}, nil
}

func (s *service) sendCreate(r *taskAPI.CreateTaskRequest, pid uint32) {
	s.send(&eventstypes.TaskCreate{
		ContainerID: r.ID,
		Bundle:      r.Bundle,
		Rootfs:      r.Rootfs,
		IO:          &eventstypes.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
		Pid:         pid,
	})
}

// join creates a container of the pod whose sandbox (VM) runs in this shim.
func (s *service) join(ctx context.Context, r *taskAPI.CreateTaskRequest, spec *specs.Spec, sb *sandbox.Sandbox) (_ *taskAPI.CreateTaskResponse, retErr error) {
	ann := spec.Annotations
	if sb == nil {
		return nil, createError(fmt.Errorf("task %s: this shim's sandbox has ended: %w", r.ID, errdefs.ErrFailedPrecondition))
	}
	if ann[sandbox.AnnotationContainerType] != sandbox.ContainerTypeContainer || ann[sandbox.AnnotationSandboxID] != sb.ID {
		return nil, createError(fmt.Errorf("task %s: this shim already runs sandbox %s; only containers of that pod (annotations %s=%s, %s=%s) can join it: %w",
			r.ID, sb.ID, sandbox.AnnotationContainerType, sandbox.ContainerTypeContainer, sandbox.AnnotationSandboxID, sb.ID, errdefs.ErrFailedPrecondition))
	}
	s.mu.Lock()
	cfg := s.sbCfg
	sbc := s.containers[sb.ID]
	s.mu.Unlock()
	if err := cfg.CheckAnnotations(ann); err != nil {
		return nil, createError(fmt.Errorf("container %s: %w", r.ID, err))
	}
	if err := sameAsSandbox(r.ID, ann, sb); err != nil {
		return nil, createError(err)
	}
	var sandboxPid uint32
	if sbc != nil {
		_, sandboxPid, _, _ = sbc.init.state()
	}
	if err := guestSpec(r.ID, spec, sandboxPid); err != nil {
		return nil, createError(err)
	}
	ac, err := s.agentClient()
	if err != nil {
		return nil, createError(err)
	}
	defer func() {
		if retErr != nil {
			if err := sb.UnmountRootfs(r.ID); err != nil {
				log.G(ctx).WithError(err).Error("cleaning up after a failed create")
			}
		}
	}()
	paths, pipes, rootfs, err := containerFiles(ctx, r, spec, sb)
	if err != nil {
		return nil, createError(err)
	}
	defer func() {
		if retErr != nil {
			pipes.Close()
		}
	}()
	res, att, err := ac.Create(ctx, r.ID, spec, rootfs, pipes.IO())
	if err != nil {
		return nil, createError(fmt.Errorf("task %s: creating the container in pod %s's VM: %w", r.ID, sb.ID, err))
	}
	c := newContainer(ctx, r, paths, pipes, att, res)
	s.mu.Lock()
	s.containers[r.ID] = c
	s.mu.Unlock()
	s.sendCreate(r, res.Pid)
	return &taskAPI.CreateTaskResponse{Pid: res.Pid}, nil
}

// containerFiles makes what a new container needs on the host before the
// agent is asked to create it: the spec's host mounts shared into the guest
// root, the task's stdio opened, its rootfs mounted under the guest root
// (the guest path is returned). On error the stdio is closed; the mounts
// are the caller's to undo (UnmountRootfs, or the sandbox's Stop).
func containerFiles(ctx context.Context, r *taskAPI.CreateTaskRequest, spec *specs.Spec, sb *sandbox.Sandbox) (stdio.Paths, *stdio.Pipes, string, error) {
	paths := stdio.Paths{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal}
	if err := sb.ShareMounts(r.ID, spec); err != nil {
		return paths, nil, "", err
	}
	pipes, err := stdio.Open(ctx, paths)
	if err != nil {
		return paths, nil, "", fmt.Errorf("task %s: %w", r.ID, err)
	}
	rootfs, err := sb.MountRootfs(r.ID, mount.FromProto(r.Rootfs))
	if err != nil {
		pipes.Close()
		return paths, nil, "", err
	}
	return paths, pipes, rootfs, nil
}

// newContainer is the shim's record of a container the agent has created.
func newContainer(ctx context.Context, r *taskAPI.CreateTaskRequest, paths stdio.Paths, pipes *stdio.Pipes, att *agent.Attached, res *api.CreateContainerResponse) *container {
	for _, w := range res.Warnings {
		log.G(ctx).WithField("id", r.ID).Warn(w)
	}
	p := newProcess(r.ID, "", paths)
	p.pipes, p.att, p.pid = pipes, att, res.Pid
	return &container{id: r.ID, bundle: r.Bundle, init: p, execs: map[string]*process{}}
}

// sameAsSandbox refuses a joining container's io.boxlite.* annotations that
// ask for a VM other than the one running: only the sandbox's annotations
// choose the kernel and the VM's size.
func sameAsSandbox(id string, ann map[string]string, sb *sandbox.Sandbox) error {
	if v, ok := ann[config.AnnotationKernel]; ok && v != string(sb.Kernel.Name) {
		return fmt.Errorf("container %s asks for kernel %q (annotation %s), but its pod %s runs the %q kernel: only the pod sandbox's annotations choose the kernel; set %s on the pod, or remove it from the container: %w",
			id, v, config.AnnotationKernel, sb.ID, sb.Kernel.Name, config.AnnotationKernel, errdefs.ErrInvalidArgument)
	}
	res := sb.Resources()
	for key, have := range map[string]int{config.AnnotationCPUs: res.CPUs, config.AnnotationMemory: res.MemoryMiB} {
		if v, ok := ann[key]; ok && v != strconv.Itoa(have) {
			return fmt.Errorf("container %s asks for %s=%s, but its pod %s's VM has %d: only the pod sandbox's annotations size the VM: %w",
				id, key, v, sb.ID, have, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// sandboxNetNS is the network namespace a new sandbox's VMM runs in: the
// path in the sandbox container's spec (a CRI pod's, that CNI prepared). A
// CRI pod sandbox without one is a host-network pod, which a VM cannot give.
func sandboxNetNS(id string, spec *specs.Spec, pod bool) (string, error) {
	if spec.Linux != nil {
		for _, ns := range spec.Linux.Namespaces {
			if ns.Type == specs.NetworkNamespace {
				if ns.Path == "" && pod {
					break
				}
				return ns.Path, nil
			}
		}
	}
	if pod {
		return "", fmt.Errorf("pod %s uses the host's network (hostNetwork: true, or no network namespace in the sandbox's spec): a micro-VM pod cannot share the host's network namespace; run it with another runtime class: %w", id, errdefs.ErrInvalidArgument)
	}
	return "", nil
}

// podCgroupsPath is the host cgroup of a pod sandbox's VMM: the sandbox
// container's cgroupsPath, where runc would put the pause process.
func podCgroupsPath(spec *specs.Spec, ctype string) string {
	if ctype != sandbox.ContainerTypeSandbox || spec.Linux == nil {
		return ""
	}
	return spec.Linux.CgroupsPath
}

// procNS matches the namespace paths CRI gives a pod's containers: those of
// the sandbox's init, /proc/<pid>/ns/<type>.
var procNS = regexp.MustCompile(`^/proc/([0-9]+)/ns/[a-z]+$`)

// guestSpec rewrites spec's namespaces for the guest: a network namespace
// given by a host path is the VM's own (the VMM runs in it), so the guest
// process stays in the guest's; namespaces of the pod's sandbox
// (/proc/<sandboxPid>/ns/...) are the guest's PIDs already, and are kept;
// any other host path cannot be joined from the guest and is refused.
func guestSpec(id string, spec *specs.Spec, sandboxPid uint32) error {
	if spec.Linux == nil {
		return nil
	}
	var out []specs.LinuxNamespace
	for _, ns := range spec.Linux.Namespaces {
		if ns.Path == "" {
			out = append(out, ns)
			continue
		}
		if m := procNS.FindStringSubmatch(ns.Path); m != nil && sandboxPid != 0 && m[1] == strconv.FormatUint(uint64(sandboxPid), 10) {
			out = append(out, ns)
			continue
		}
		if ns.Type == specs.NetworkNamespace {
			continue // the VM's (the VMM runs in it): the guest's own
		}
		return fmt.Errorf("container %s: %s namespace %s is a host namespace the guest cannot join: %w", id, ns.Type, ns.Path, errdefs.ErrInvalidArgument)
	}
	spec.Linux.Namespaces = out
	return nil
}

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
		c.mu.Lock()
		for _, e := range c.execs {
			all = append(all, e)
		}
		c.mu.Unlock()
	}
	s.mu.Unlock()
	var out []*process
	for _, p := range all {
		p.mu.Lock()
		if !p.started && p.status == task.Status_CREATED {
			p.started = true
			out = append(out, p)
		}
		p.mu.Unlock()
	}
	return out
}

// Start starts a created init or exec process.
func (s *service) Start(ctx context.Context, r *taskAPI.StartRequest) (*taskAPI.StartResponse, error) {
	c, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if p.started || p.status != task.Status_CREATED {
		p.mu.Unlock()
		return nil, errgrpc.ToGRPC(fmt.Errorf("process %s of task %s: already started: %w", p.id(), r.ID, errdefs.ErrFailedPrecondition))
	}
	p.started = true
	p.mu.Unlock()

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
			p.mu.Lock()
			pio := p.pipes.IO()
			p.mu.Unlock()
			pid, att, err = ac.Exec(ctx, r.ID, r.ExecID, p.spec, pio)
			p.mu.Lock()
			p.att = att
			p.mu.Unlock()
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
			p.mu.Lock()
			p.status = task.Status_STOPPED
			p.exitStatus = failedStartStatus
			p.exitedAt = time.Now()
			p.mu.Unlock()
			p.markExited()
		}
		return nil, errgrpc.ToGRPC(err)
	}
	p.mu.Lock()
	p.pid = uint32(pid)
	p.status = task.Status_RUNNING
	p.mu.Unlock()
	if r.ExecID == "" {
		s.send(&eventstypes.TaskStart{ContainerID: r.ID, Pid: uint32(pid)})
	} else {
		s.send(&eventstypes.TaskExecStarted{ContainerID: r.ID, ExecID: r.ExecID, Pid: uint32(pid)})
	}
	// The waiter starts after the start event is queued, so the exit event
	// follows it; the agent keeps an exit until it is waited for, so an
	// exit that raced Start is not lost.
	s.mu.Lock()
	sb := s.sb
	s.mu.Unlock()
	go s.waitExit(c, p, ac, sb)
	return &taskAPI.StartResponse{Pid: uint32(pid)}, nil
}

// failedStart records the exit of an init whose start failed.
func (s *service) failedStart(p *process, at time.Time) {
	p.closeIO()
	p.mu.Lock()
	p.status = task.Status_STOPPED
	p.exitStatus = failedStartStatus
	p.exitedAt = at
	pid := p.pid
	p.mu.Unlock()
	s.send(&eventstypes.TaskExit{ContainerID: p.containerID, ID: p.id(), Pid: pid, ExitStatus: failedStartStatus, ExitedAt: protobuf.ToTimestamp(at)})
	p.markExited()
}

// waitExit waits for a started process to exit, drains its output, and
// queues TaskExit. For init, the container's exec processes' exits go first.
func (s *service) waitExit(c *container, p *process, ac *agent.Client, sb *sandbox.Sandbox) {
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
	p.mu.Lock()
	att, pipes := p.att, p.pipes
	p.mu.Unlock()
	if att != nil {
		att.Wait() // stdout and stderr copied out in full
	}
	if pipes != nil {
		pipes.Close()
	}
	if p.execID == "" {
		// An init's exit is the container's last.
		c.mu.Lock()
		var execs []*process
		for _, e := range c.execs {
			execs = append(execs, e)
		}
		c.mu.Unlock()
		for _, e := range execs {
			e.mu.Lock()
			started := e.started
			e.mu.Unlock()
			if started {
				<-e.exited
			}
		}
	}
	p.mu.Lock()
	p.status = task.Status_STOPPED
	p.exitStatus = status
	p.exitedAt = exitedAt
	pid := p.pid
	p.mu.Unlock()
	s.send(&eventstypes.TaskExit{
		ContainerID: p.containerID,
		ID:          p.id(),
		Pid:         pid,
		ExitStatus:  status,
		ExitedAt:    protobuf.ToTimestamp(exitedAt),
	})
	p.markExited()
}

func (s *service) State(ctx context.Context, r *taskAPI.StateRequest) (*taskAPI.StateResponse, error) {
	c, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	st, pid, code, at := p.state()
	resp := &taskAPI.StateResponse{
		ID:         p.id(),
		Bundle:     c.bundle,
		Pid:        pid,
		Status:     st,
		Stdin:      p.paths.Stdin,
		Stdout:     p.paths.Stdout,
		Stderr:     p.paths.Stderr,
		Terminal:   p.paths.Terminal,
		ExitStatus: code,
		ExecID:     r.ExecID,
	}
	if !at.IsZero() {
		resp.ExitedAt = protobuf.ToTimestamp(at)
	}
	return resp, nil
}

// Delete removes an exited (or never started) process. Deleting the init
// removes the container; the sandbox's own container's also stops the VM.
func (s *service) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	c, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	started := p.started
	p.mu.Unlock()
	if started && !p.hasExited() {
		return nil, errgrpc.ToGRPC(fmt.Errorf("process %s of task %s is running; kill it first: %w", p.id(), r.ID, errdefs.ErrFailedPrecondition))
	}
	ac, acErr := s.agentClient()
	if r.ExecID != "" {
		if acErr == nil {
			var err error
			if started {
				err = ac.DeleteProcess(ctx, r.ID, r.ExecID)
			}
			if err != nil && !errdefs.IsNotFound(err) {
				return nil, errgrpc.ToGRPC(fmt.Errorf("delete exec %s of task %s: %w", r.ExecID, r.ID, err))
			}
		}
		p.closeIO()
		if !started {
			p.mu.Lock()
			p.status = task.Status_STOPPED
			if p.exitedAt.IsZero() {
				p.exitedAt = time.Now()
			}
			p.mu.Unlock()
			p.markExited()
		}
		c.mu.Lock()
		delete(c.execs, r.ExecID)
		c.mu.Unlock()
		_, pid, code, at := p.state()
		return &taskAPI.DeleteResponse{Pid: pid, ExitStatus: code, ExitedAt: protobuf.ToTimestamp(at)}, nil
	}

	if acErr == nil {
		if err := ac.Delete(ctx, r.ID, !started); err != nil && !errdefs.IsNotFound(err) {
			return nil, errgrpc.ToGRPC(fmt.Errorf("delete task %s in the guest: %w", r.ID, err))
		}
	}
	p.closeIO()
	c.mu.Lock()
	for _, e := range c.execs {
		e.closeIO()
	}
	c.mu.Unlock()
	if !started {
		p.mu.Lock()
		p.status = task.Status_STOPPED
		if p.exitedAt.IsZero() {
			p.exitedAt = time.Now()
		}
		p.mu.Unlock()
		p.markExited() // a Wait on the never started task returns
	}
	s.mu.Lock()
	sb := s.sb
	s.mu.Unlock()
	if sb != nil && sb.ID != r.ID {
		// A container that joined the pod: the VM stays.
		if err := sb.UnmountRootfs(r.ID); err != nil {
			return nil, errgrpc.ToGRPC(fmt.Errorf("delete task %s: %w", r.ID, err))
		}
	} else if err := s.stopSandbox(ctx); err != nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("delete task %s: %w", r.ID, err))
	}
	s.mu.Lock()
	delete(s.containers, r.ID)
	s.mu.Unlock()
	_, pid, code, at := p.state()
	s.send(&eventstypes.TaskDelete{
		ContainerID: r.ID,
		ID:          r.ID,
		Pid:         pid,
		ExitStatus:  code,
		ExitedAt:    protobuf.ToTimestamp(at),
	})
	return &taskAPI.DeleteResponse{Pid: pid, ExitStatus: code, ExitedAt: protobuf.ToTimestamp(at)}, nil
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

func (s *service) Pids(ctx context.Context, r *taskAPI.PidsRequest) (*taskAPI.PidsResponse, error) {
	_, ac, err := s.containerAgent(r.ID)
	if err != nil {
		return nil, err
	}
	procs, err := ac.Pids(ctx, r.ID)
	if err != nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("pids of task %s: %w", r.ID, err))
	}
	resp := &taskAPI.PidsResponse{}
	for _, pr := range procs {
		pi := &task.ProcessInfo{Pid: pr.Pid}
		if pr.ExecId != "" {
			a, err := typeurl.MarshalAnyToProto(&options.ProcessDetails{ExecID: pr.ExecId})
			if err != nil {
				return nil, errgrpc.ToGRPC(err)
			}
			pi.Info = a
		}
		resp.Processes = append(resp.Processes, pi)
	}
	return resp, nil
}

func (s *service) Pause(ctx context.Context, r *taskAPI.PauseRequest) (*emptypb.Empty, error) {
	return s.freeze(ctx, r.ID, "pause", (*agent.Client).Pause, task.Status_PAUSED, &eventstypes.TaskPaused{ContainerID: r.ID})
}

func (s *service) Resume(ctx context.Context, r *taskAPI.ResumeRequest) (*emptypb.Empty, error) {
	return s.freeze(ctx, r.ID, "resume", (*agent.Client).Resume, task.Status_RUNNING, &eventstypes.TaskResumed{ContainerID: r.ID})
}

// freeze pauses or resumes task id in the guest (call), then records its
// new status and publishes the event.
func (s *service) freeze(ctx context.Context, id, verb string, call func(*agent.Client, context.Context, string) error, status task.Status, event any) (*emptypb.Empty, error) {
	c, ac, err := s.containerAgent(id)
	if err != nil {
		return nil, err
	}
	if err := call(ac, ctx, id); err != nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("%s task %s: %w", verb, id, err))
	}
	c.init.setStatus(status)
	s.send(event)
	return empty, nil
}

func (s *service) Checkpoint(ctx context.Context, r *taskAPI.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return nil, errgrpc.ToGRPC(fmt.Errorf("boxlite: checkpoint of a micro-VM sandbox is not supported: %w", errdefs.ErrNotImplemented))
}

func (s *service) Kill(ctx context.Context, r *taskAPI.KillRequest) (*emptypb.Empty, error) {
	_, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if p.hasExited() {
		return nil, errgrpc.ToGRPC(fmt.Errorf("process %s of task %s: process already finished: %w", p.id(), r.ID, errdefs.ErrNotFound))
	}
	ac, err := s.agentClient()
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	if err := ac.Signal(ctx, r.ID, r.ExecID, syscall.Signal(r.Signal), r.All); err != nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("signal %d to process %s of task %s: %w", r.Signal, p.id(), r.ID, err))
	}
	return empty, nil
}

// Exec adds an exec process; Start starts it.
func (s *service) Exec(ctx context.Context, r *taskAPI.ExecProcessRequest) (_ *emptypb.Empty, retErr error) {
	c, err := s.container(r.ID)
	if err != nil {
		return nil, err
	}
	if c.init.hasExited() {
		return nil, errgrpc.ToGRPC(fmt.Errorf("task %s has exited: %w", r.ID, errdefs.ErrFailedPrecondition))
	}
	if r.Spec == nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("exec %s: no process spec: %w", r.ExecID, errdefs.ErrInvalidArgument))
	}
	var spec specs.Process
	if err := json.Unmarshal(r.Spec.GetValue(), &spec); err != nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("exec %s: process spec: %v: %w", r.ExecID, err, errdefs.ErrInvalidArgument))
	}
	c.mu.Lock()
	if _, ok := c.execs[r.ExecID]; ok {
		c.mu.Unlock()
		return nil, errgrpc.ToGRPC(fmt.Errorf("exec %s of task %s: %w", r.ExecID, r.ID, errdefs.ErrAlreadyExists))
	}
	paths := stdio.Paths{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal}
	p := newProcess(r.ID, r.ExecID, paths)
	p.spec = &spec
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
		return nil, errgrpc.ToGRPC(fmt.Errorf("exec %s of task %s: %w", r.ExecID, r.ID, err))
	}
	p.mu.Lock()
	p.pipes = pipes
	p.mu.Unlock()
	s.send(&eventstypes.TaskExecAdded{ContainerID: r.ID, ExecID: r.ExecID})
	return empty, nil
}

func (s *service) ResizePty(ctx context.Context, r *taskAPI.ResizePtyRequest) (*emptypb.Empty, error) {
	_, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if !p.paths.Terminal {
		return nil, errgrpc.ToGRPC(fmt.Errorf("process %s of task %s has no terminal: %w", p.id(), r.ID, errdefs.ErrFailedPrecondition))
	}
	ac, err := s.agentClient()
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	if err := ac.ResizePty(ctx, r.ID, r.ExecID, r.Width, r.Height); err != nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("resize terminal of process %s of task %s: %w", p.id(), r.ID, err))
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
	p.mu.Lock()
	att := p.att
	p.mu.Unlock()
	if att == nil || p.hasExited() {
		return empty, nil
	}
	if err := att.CloseStdin(ctx); err != nil && !errdefs.IsNotFound(err) {
		return nil, errgrpc.ToGRPC(fmt.Errorf("close stdin of process %s of task %s: %w", p.id(), r.ID, err))
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
		return nil, errgrpc.ToGRPC(fmt.Errorf("update task %s: no resources given: %w", r.ID, errdefs.ErrInvalidArgument))
	}
	var res specs.LinuxResources
	if err := json.Unmarshal(r.Resources.GetValue(), &res); err != nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("update task %s: resources of type %s must be OCI LinuxResources: %v: %w", r.ID, r.Resources.GetTypeUrl(), err, errdefs.ErrInvalidArgument))
	}
	ac, err := s.agentClient()
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	if err := ac.Update(ctx, r.ID, &res); err != nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("update task %s: %w", r.ID, err))
	}
	return empty, nil
}

func (s *service) Wait(ctx context.Context, r *taskAPI.WaitRequest) (*taskAPI.WaitResponse, error) {
	_, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	started := p.started
	p.mu.Unlock()
	if !started && !p.hasExited() {
		// containerd waits on created tasks too: the exit comes after Start.
		log.G(ctx).WithField("id", r.ID).WithField("exec", r.ExecID).Debug("wait on a process not started yet")
	}
	if err := p.wait(ctx); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	_, _, code, at := p.state()
	return &taskAPI.WaitResponse{ExitStatus: code, ExitedAt: protobuf.ToTimestamp(at)}, nil
}

func (s *service) Stats(ctx context.Context, r *taskAPI.StatsRequest) (*taskAPI.StatsResponse, error) {
	_, ac, err := s.containerAgent(r.ID)
	if err != nil {
		return nil, err
	}
	st, err := ac.Stats(ctx, r.ID)
	if err != nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("stats of task %s: %w", r.ID, err))
	}
	if len(st.Unavailable) > 0 {
		log.G(ctx).WithField("id", r.ID).Debugf("stats not available from the guest: %v", st.Unavailable)
	}
	a, err := typeurl.MarshalAnyToProto(metrics(st))
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &taskAPI.StatsResponse{Stats: a}, nil
}

func (s *service) Connect(ctx context.Context, r *taskAPI.ConnectRequest) (*taskAPI.ConnectResponse, error) {
	resp := &taskAPI.ConnectResponse{ShimPid: uint32(os.Getpid())}
	if c, err := s.container(r.ID); err == nil {
		_, pid, _, _ := c.init.state()
		resp.TaskPid = pid
	}
	return resp, nil
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
