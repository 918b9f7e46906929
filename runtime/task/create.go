package task

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/boxlite/boxlite-shim/config"
	"github.com/boxlite/boxlite-shim/runtime/agent"
	"github.com/boxlite/boxlite-shim/runtime/agent/api"
	"github.com/boxlite/boxlite-shim/runtime/portfwd"
	"github.com/boxlite/boxlite-shim/runtime/sandbox"
	"github.com/boxlite/boxlite-shim/runtime/stdio"
)

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

// createError is the error a failed Create returns. Unimplemented must not
// come back from Create: containerd 2.4 takes it for an API mismatch and
// retries on task v2, which hides the message; a NotImplemented error is
// therefore made a FailedPrecondition here, before the interceptor maps it
// to a gRPC code.
func createError(err error) error {
	if errdefs.IsNotImplemented(err) {
		err = fmt.Errorf("%s: %w", err.Error(), errdefs.ErrFailedPrecondition)
	}
	return fmt.Errorf("boxlite: create: %w", err)
}

// Create boots the sandbox's VM and creates the container in it, or, for a
// container of a CRI pod whose sandbox runs in this shim, creates it in the
// running VM.
func (s *service) Create(ctx context.Context, r *taskAPI.CreateTaskRequest) (_ *taskAPI.CreateTaskResponse, retErr error) {
	if r.Checkpoint != "" {
		return nil, createError(fmt.Errorf("restoring from a checkpoint: %w", errdefs.ErrNotImplemented))
	}
	t0 := time.Now()
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
	ctype := spec.Annotations[config.AnnotationContainerType]
	if sb != nil || n > 0 {
		return s.join(ctx, r, spec, sb)
	}
	if ctype == config.ContainerTypeContainer {
		return nil, createError(fmt.Errorf("container %s of pod %s: the pod's sandbox does not run in this shim (create the pod's sandbox first): %w", r.ID, spec.Annotations[config.AnnotationSandboxID], errdefs.ErrFailedPrecondition))
	}

	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, createError(err)
	}
	cfg, err := config.LoadFromOptions(r.Options)
	if err != nil {
		return nil, createError(fmt.Errorf("configuration: %w", err))
	}
	req, err := cfg.Request(spec.Annotations)
	if err != nil {
		return nil, createError(fmt.Errorf("sandbox %s: %w", r.ID, err))
	}
	tPrepare := time.Now()
	sandbox.Span(ctx, r.ID, "spec", t0, tPrepare) // the bundle's spec, the configuration, the request
	netns, err := sandboxNetNS(r.ID, spec)
	if err != nil {
		return nil, createError(err)
	}
	if err := checkHostIPC(r.ID, spec); err != nil {
		return nil, createError(err)
	}
	sb, err = sandbox.Prepare(ctx, sandbox.Options{
		Namespace: ns, ID: r.ID, Config: cfg, Request: req, Bundle: r.Bundle, Reaper: s.reaper, NetNS: netns,
		CgroupsPath: podCgroupsPath(spec, ctype), OOMScoreAdj: oomScoreAdj(spec),
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
	if err := guestSpec(r.ID, spec, 0, 0); err != nil {
		return nil, createError(err)
	}
	tBoot := time.Now()
	sandbox.Span(ctx, r.ID, "prepare", tPrepare, tBoot) // kernel chosen and verified, directories, agent
	// The VM first: the container's mounts go into the VMM's namespace.
	if err := sb.Boot(ctx); err != nil {
		return nil, createError(err)
	}
	tCreate := time.Now()
	sandbox.Span(ctx, r.ID, "boot", tBoot, tCreate)
	fwd := forwardPorts(ctx, netns, sb)
	defer func() {
		if retErr != nil && fwd != nil {
			fwd.Close()
		}
	}()
	paths, pipes, rootfs, err := containerFiles(ctx, r, spec, sb)
	if err != nil {
		return nil, createError(err)
	}
	defer onFailure(&retErr, pipes.Close)
	pio, tail := withTail(pipes.IO())
	res, att, err := sb.Agent().Create(ctx, r.ID, spec, rootfs, pio)
	if err != nil {
		return nil, createError(fmt.Errorf("task %s: creating the container in the guest: %w", r.ID, err))
	}
	c := newContainer(ctx, r, paths, pipes, att, res, uint32(sb.VMMPid()))
	c.init.tail = tail
	sandbox.Span(ctx, r.ID, "create", tCreate, time.Now()) // mounts and the container in the guest

	evCtx, cancel := context.WithCancel(s.ctx)
	evs := newAgentEvents()
	s.mu.Lock()
	s.sb, s.sbEvents, s.sbCancel, s.sbCfg, s.fwd = sb, evs, cancel, cfg, fwd
	s.containers[r.ID] = c
	s.mu.Unlock()
	go evs.follow(evCtx, sb.Agent(), s.queue, s.holds)
	go s.watchSandbox(sb)

	pid := c.init.pid(c.init.state())
	s.sendCreate(r, pid)
	return &taskAPI.CreateTaskResponse{Pid: pid}, nil
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
	if ann[config.AnnotationContainerType] != config.ContainerTypeContainer || ann[config.AnnotationSandboxID] != sb.ID {
		return nil, createError(fmt.Errorf("task %s: this shim already runs sandbox %s; only containers of that pod (annotations %s=%s, %s=%s) can join it: %w",
			r.ID, sb.ID, config.AnnotationContainerType, config.ContainerTypeContainer, config.AnnotationSandboxID, sb.ID, errdefs.ErrFailedPrecondition))
	}
	s.mu.Lock()
	cfg := s.sbCfg
	sbc := s.containers[sb.ID]
	s.mu.Unlock()
	if err := sb.Request().Admit(cfg, r.ID, sb.ID, ann); err != nil {
		return nil, createError(err)
	}
	var guestPid uint32
	if sbc != nil {
		guestPid = sbc.init.state().pid
	}
	hostPid := uint32(sb.VMMPid())
	if err := guestSpec(r.ID, spec, hostPid, guestPid); err != nil {
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
	defer onFailure(&retErr, pipes.Close)
	pio, tail := withTail(pipes.IO())
	res, att, err := ac.Create(ctx, r.ID, spec, rootfs, pio)
	if err != nil {
		return nil, createError(fmt.Errorf("task %s: creating the container in pod %s's VM: %w", r.ID, sb.ID, err))
	}
	c := newContainer(ctx, r, paths, pipes, att, res, hostPid)
	c.init.tail = tail
	s.mu.Lock()
	s.containers[r.ID] = c
	s.mu.Unlock()
	pid := c.init.pid(c.init.state())
	s.sendCreate(r, pid)
	return &taskAPI.CreateTaskResponse{Pid: pid}, nil
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
	rootfs, err := sb.MountRootfs(r.ID, r.Bundle, mount.FromProto(r.Rootfs))
	if err != nil {
		pipes.Close()
		return paths, nil, "", err
	}
	return paths, pipes, rootfs, nil
}

// onFailure runs undo if *errp holds an error: deferred with a function's
// named error, it undoes a step of the function if the function fails.
func onFailure(errp *error, undo func()) {
	if *errp != nil {
		undo()
	}
}

// newContainer is the shim's record of a container the agent has created
// in the sandbox whose VMM is host process hostPid.
func newContainer(ctx context.Context, r *taskAPI.CreateTaskRequest, paths stdio.Paths, pipes *stdio.Pipes, att *agent.Attached, res *api.CreateContainerResponse, hostPid uint32) *container {
	for _, w := range res.Warnings {
		log.G(ctx).WithField("id", r.ID).Warn(w)
	}
	return &container{id: r.ID, bundle: r.Bundle, init: newInit(r.ID, paths, pipes, att, res.Pid, hostPid), execs: map[string]*process{}}
}

// forwardPorts starts CRI's port forwarding into the guest for a sandbox in
// the network namespace at netns (a pod's). Without nftables NAT on the node
// it logs why and returns nil: the pod runs, `crictl port-forward` fails.
//
// Not where the guest has libkrun's TSI (a namespace with no interface but
// lo): there the guest's own sockets are the VMM's, in this namespace, and
// its loopback connections would come back through the redirection.
func forwardPorts(ctx context.Context, netns string, sb *sandbox.Sandbox) *portfwd.Forwarder {
	if netns == "" {
		return nil
	}
	if tsi, err := portfwd.OnlyLoopback(netns); err != nil || tsi {
		log.G(ctx).WithError(err).Info("no port forwarding into the guest: its network is libkrun's TSI, or unknown")
		return nil
	}
	fwd, err := portfwd.Start(netns, func(ctx context.Context, port uint16) (net.Conn, error) {
		return sb.Agent().DialPort(ctx, port)
	})
	if err != nil {
		log.G(ctx).WithError(err).Warn("port forwarding into the guest is not available for this pod")
		return nil
	}
	return fwd
}

// sandboxNetNS is the network namespace a new sandbox's VMM runs in: the
// path in the sandbox container's spec (a CRI pod's, that CNI prepared), or
// "" for a spec that asks for a namespace of its own without a path (ctr run
// without CNI): the VMM then gets a fresh, empty one, as runc's container
// would, so that libkrun's TSI reaches nothing of the host. The host's
// network namespace, by omission (hostNetwork: true, ctr run --net-host) or
// by path, is refused: the VMM, and with TSI the guest, would share it.
func sandboxNetNS(id string, spec *specs.Spec) (string, error) {
	refuse := func(how string) error {
		return fmt.Errorf("sandbox %s %s: a micro-VM cannot share the host's network namespace (its VMM, and through libkrun's TSI its guest, would reach the host's services); give it a network namespace of its own (a CRI pod without hostNetwork, ctr run without --net-host), or run it with another runtime: %w",
			id, how, errdefs.ErrInvalidArgument)
	}
	ns, ok := specNamespace(spec, specs.NetworkNamespace)
	switch {
	case !ok:
		return "", refuse("uses the host's network (hostNetwork: true, or no network namespace in its spec)")
	case ns.Path == "":
		return "", nil
	}
	if _, err := os.Stat(ns.Path); err != nil {
		return "", fmt.Errorf("sandbox %s: network namespace %s cannot be opened: %w: %w", id, ns.Path, err, errdefs.ErrInvalidArgument)
	}
	if isHostNamespace(ns.Path, "net") {
		return "", refuse(fmt.Sprintf("names the host's network namespace (%s)", ns.Path))
	}
	return ns.Path, nil
}

// checkHostIPC refuses a sandbox that would share the host's IPC namespace
// (hostIPC: true, or no IPC namespace in its spec): the guest has its own
// System V IPC and POSIX message queues, which cannot be the host's.
func checkHostIPC(id string, spec *specs.Spec) error {
	if _, ok := specNamespace(spec, specs.IPCNamespace); !ok {
		return fmt.Errorf("sandbox %s uses the host's IPC namespace (hostIPC: true, or no ipc namespace in its spec): a micro-VM's guest has its own IPC namespace and cannot share the host's; run it with another runtime: %w", id, errdefs.ErrInvalidArgument)
	}
	return nil
}

func specNamespace(spec *specs.Spec, t specs.LinuxNamespaceType) (specs.LinuxNamespace, bool) {
	if spec.Linux != nil {
		for _, ns := range spec.Linux.Namespaces {
			if ns.Type == t {
				return ns, true
			}
		}
	}
	return specs.LinuxNamespace{}, false
}

// isHostNamespace reports whether path is the host's namespace of kind
// (net, ipc...): the shim's own (its calling thread's), or init's.
func isHostNamespace(path, kind string) bool {
	st, err := os.Stat(path)
	if err != nil {
		return false
	}
	for _, host := range []string{"/proc/thread-self/ns/" + kind, "/proc/1/ns/" + kind} {
		if hs, err := os.Stat(host); err == nil && os.SameFile(st, hs) {
			return true
		}
	}
	return false
}

// oomScoreAdj is the spec's process oom_score_adj, which the VMM gets.
func oomScoreAdj(spec *specs.Spec) *int {
	if spec.Process == nil {
		return nil
	}
	return spec.Process.OOMScoreAdj
}

// podCgroupsPath is the host cgroup of a pod sandbox's VMM: the sandbox
// container's cgroupsPath, where runc would put the pause process.
func podCgroupsPath(spec *specs.Spec, ctype string) string {
	if ctype != config.ContainerTypeSandbox || spec.Linux == nil {
		return ""
	}
	return spec.Linux.CgroupsPath
}

// procNS matches the namespace paths CRI gives a pod's containers: those of
// the sandbox's task, /proc/<pid>/ns/<type>, with the PID the shim reported
// for it.
var procNS = regexp.MustCompile(`^/proc/([0-9]+)/ns/([a-z_]+)$`)

// guestSpec rewrites spec's namespaces for the guest: a network namespace
// given by a host path is the VM's own (the VMM runs in it), so the guest
// process stays in the guest's; namespaces of the pod's sandbox, which CRI
// names by the PID the shim reported for the sandbox's task (the VMM's,
// hostPid: /proc/<hostPid>/ns/<type>), are the sandbox init's in the guest
// (guestPid) and become /proc/<guestPid>/ns/<type>; any other host path
// cannot be joined from the guest and is refused.
func guestSpec(id string, spec *specs.Spec, hostPid, guestPid uint32) error {
	if spec.Linux == nil {
		return nil
	}
	var out []specs.LinuxNamespace
	for _, ns := range spec.Linux.Namespaces {
		if ns.Path == "" {
			out = append(out, ns)
			continue
		}
		if m := procNS.FindStringSubmatch(ns.Path); m != nil && hostPid != 0 && guestPid != 0 && m[1] == strconv.FormatUint(uint64(hostPid), 10) {
			ns.Path = fmt.Sprintf("/proc/%d/ns/%s", guestPid, m[2])
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
