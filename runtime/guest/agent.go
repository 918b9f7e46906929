package guest

import (
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/boxlite/boxlite-shim/runtime/agent/api"
	"github.com/boxlite/boxlite-shim/runtime/guest/jail"
)

// outputGrace is how long, after a process exits, its output streams may stay
// open because a process it left behind still holds them; then the agent
// stops reading (once nothing is left unread) and closes them.
const outputGrace = 2 * time.Second

// syncTimeout bounds each step of the handshake with a starting child.
const syncTimeout = 30 * time.Second

// Agent is the guest agent: it runs the pod's containers and serves the agent
// API.
type Agent struct {
	cg       *cgroups
	reaper   *reaper
	events   *eventLog
	oom      *oomWatcher
	self     string // this binary, to re-execute
	onHost   bool
	warnings []string

	mu         sync.Mutex
	containers map[string]*container
	pending    map[streamKey]net.Conn // stdio attached before its exec process exists
}

type streamKey struct{ container, exec, stream string }

type container struct {
	a        *Agent
	id       string
	spec     *specs.Spec
	cgroup   string // leaf directory, "" without cgroups
	init     *process
	execs    map[string]*process
	oomMu    sync.Mutex
	oomSeen  uint64
	deleting bool
	// sharedPID: the container joined another's PID namespace (a pod's),
	// so that namespace's processes are not all its own.
	sharedPID bool
}

// New makes the agent, its containers' cgroups going under cgroupRoot;
// warnings (from SetupGuest) are reported with its own by Info.
func New(cgroupRoot string, warnings []string) (*Agent, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	a := &Agent{
		cg:         newCgroups(cgroupRoot),
		reaper:     newReaper(),
		events:     newEventLog(),
		self:       self,
		onHost:     os.Getenv("BOXLITE_TEST_DOUBLE") == "1",
		containers: map[string]*container{},
		pending:    map[streamKey]net.Conn{},
	}
	a.warnings = append(warnings, a.cg.warnings...)
	a.oom = newOOMWatcher(a.checkOOMByID)
	return a, nil
}

// Environment says where the agent runs: "vm", or on the host under the
// libkrun test double.
func (a *Agent) Environment() string {
	if a.onHost {
		return "host (libkrun test double)"
	}
	return "vm"
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// Warnings lists what the agent could not set up (cgroups, init mounts).
func (a *Agent) Warnings() []string { return a.warnings }

func validID(kind, id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("%s id %q: want [A-Za-z0-9][A-Za-z0-9_.-]*, at most 128 characters: %w", kind, id, errdefs.ErrInvalidArgument)
	}
	return nil
}

func (a *Agent) container(id string) (*container, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.containers[id]
	if c == nil || c.init == nil {
		return nil, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

func (a *Agent) process(containerID, execID string) (*container, *process, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.containers[containerID]
	if c == nil || c.init == nil {
		return nil, nil, fmt.Errorf("container %q: %w", containerID, errdefs.ErrNotFound)
	}
	if execID == "" {
		return c, c.init, nil
	}
	p := c.execs[execID]
	if p == nil {
		return c, nil, fmt.Errorf("exec %q in container %q: %w", execID, containerID, errdefs.ErrNotFound)
	}
	return c, p, nil
}

// createContainer prepares a container and its init process, which waits
// for startInit.
func (a *Agent) createContainer(req *api.CreateContainerRequest) (*api.CreateContainerResponse, error) {
	if err := validID("container", req.Id); err != nil {
		return nil, err
	}
	var spec specs.Spec
	if err := json.Unmarshal(req.Spec, &spec); err != nil {
		return nil, fmt.Errorf("spec: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if spec.Process == nil || len(spec.Process.Args) == 0 {
		return nil, fmt.Errorf("spec has no process args: %w", errdefs.ErrInvalidArgument)
	}
	if err := refused(&spec); err != nil {
		return nil, err
	}
	rootfs := req.Rootfs
	if rootfs == "" && spec.Root != nil && filepath.IsAbs(spec.Root.Path) {
		rootfs = spec.Root.Path
	}
	if !filepath.IsAbs(rootfs) {
		return nil, fmt.Errorf("rootfs %q is not an absolute guest path: %w", rootfs, errdefs.ErrInvalidArgument)
	}
	if st, err := os.Stat(rootfs); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("rootfs %s is not a directory in the guest: %w", rootfs, errdefs.ErrInvalidArgument)
	}
	stdio := req.Stdio
	if stdio == nil {
		stdio = &api.StdioConfig{}
	}
	cloneFlags := uintptr(0)
	newNS := map[string]bool{}
	pidNS := ""
	var join []jail.Namespace
	if spec.Linux != nil {
		for _, ns := range spec.Linux.Namespaces {
			flag, ok := jail.CloneFlag(ns.Type)
			if !ok {
				return nil, fmt.Errorf("namespace %q: %w", ns.Type, errdefs.ErrInvalidArgument)
			}
			switch {
			case ns.Type == specs.UserNamespace:
				return nil, fmt.Errorf("user namespaces are not supported in the guest: %w", errdefs.ErrNotImplemented)
			case ns.Path == "":
				cloneFlags |= uintptr(flag)
				newNS[string(ns.Type)] = true
			case ns.Type == specs.PIDNamespace:
				// A pod's shared PID namespace (its sandbox's): the init
				// is forked into it (startChild).
				if !isNamespace(ns.Path, "pid") {
					return nil, fmt.Errorf("pid namespace %s: not a PID namespace in the guest: %w", ns.Path, errdefs.ErrInvalidArgument)
				}
				pidNS = ns.Path
			case ns.Type == specs.MountNamespace:
				return nil, fmt.Errorf("joining a %s namespace by path (%s) is not supported: %w", ns.Type, ns.Path, errdefs.ErrNotImplemented)
			default:
				join = append(join, jail.Namespace{Type: string(ns.Type), Path: ns.Path})
			}
		}
	}
	// Container mounts always happen in a mount namespace of their own.
	cloneFlags |= unix.CLONE_NEWNS
	newNS[string(specs.MountNamespace)] = true

	c := &container{a: a, id: req.Id, spec: &spec, execs: map[string]*process{}, sharedPID: pidNS != ""}
	a.mu.Lock()
	if a.containers[req.Id] != nil {
		a.mu.Unlock()
		return nil, fmt.Errorf("container %q: %w", req.Id, errdefs.ErrAlreadyExists)
	}
	a.containers[req.Id] = c // reserved; c.init == nil until created
	a.mu.Unlock()
	fail := func(err error) (*api.CreateContainerResponse, error) {
		a.mu.Lock()
		delete(a.containers, req.Id)
		a.mu.Unlock()
		if c.cgroup != "" {
			if rerr := a.cg.remove(c.cgroup); rerr != nil {
				log.Printf("container %s: %v", req.Id, rerr)
			}
		}
		return nil, err
	}

	var res *specs.LinuxResources
	if spec.Linux != nil {
		res = spec.Linux.Resources
	}
	dir, warnings, err := a.cg.create(req.Id, res)
	if err != nil {
		return fail(err)
	}
	warnings = append(warnings, unenforced(&spec)...)
	c.cgroup = dir

	p := newProcess(c, "", stdio)
	cfg := &jail.Config{
		ContainerID: req.Id,
		Process:     spec.Process,
		Terminal:    stdio.Terminal,
		Join:        join,
		Spec:        &spec,
		Rootfs:      rootfs,
		NewNS:       newNS,
	}
	if spec.Linux != nil {
		cfg.Seccomp = spec.Linux.Seccomp
	}
	sys := &syscall.SysProcAttr{Cloneflags: cloneFlags}
	if err := a.startChild(p, jail.InitCmd, cfg, pidNS, sys); err != nil {
		p.abandon()
		return fail(err)
	}
	// Wait for "ready" (after the PTY, if any).
	for {
		m, fd, err := p.sync.Recv(syncTimeout)
		if err == nil && m.Type == jail.MsgPty && fd >= 0 {
			p.setPty(fd)
			continue
		}
		if err == nil && m.Type == jail.MsgReady {
			break
		}
		p.kill()
		p.closeAll()
		return fail(childError("create container "+req.Id, m, err, p))
	}
	if err := a.cg.restrictDevices(c.cgroup, res); err != nil {
		p.kill()
		p.closeAll()
		return fail(fmt.Errorf("create container %s: %w", req.Id, err))
	}
	a.mu.Lock()
	c.init = p
	a.mu.Unlock()
	a.oom.add(c.id, c.cgroup)
	log.Printf("container %s: created, init pid %d, cgroup %q", c.id, p.pid(), c.cgroup)
	return &api.CreateContainerResponse{Pid: uint32(p.pid()), Warnings: warnings}, nil
}

// refused says why the agent cannot run a spec as asked, where applying
// the rest would mislead: OCI hooks (programs of the host, which the guest
// has not, to run at points of the host's lifecycle) and mounts whose
// propagation would reach back to the host (Bidirectional: a mount made in
// the guest cannot cross virtio-fs).
func refused(spec *specs.Spec) error {
	if h := spec.Hooks; h != nil {
		var kinds []string
		for _, k := range []struct {
			name  string
			hooks []specs.Hook
		}{{"prestart", h.Prestart}, {"createRuntime", h.CreateRuntime}, {"createContainer", h.CreateContainer},
			{"startContainer", h.StartContainer}, {"poststart", h.Poststart}, {"poststop", h.Poststop}} {
			if len(k.hooks) > 0 {
				kinds = append(kinds, fmt.Sprintf("%s (%s)", k.name, k.hooks[0].Path))
			}
		}
		if len(kinds) > 0 {
			return fmt.Errorf("OCI hooks are not supported in a micro-VM: the spec has %s hooks: %w", strings.Join(kinds, ", "), errdefs.ErrNotImplemented)
		}
	}
	for _, m := range spec.Mounts {
		for _, o := range m.Options {
			if o == "rshared" || o == "shared" {
				return fmt.Errorf("mount %s: Bidirectional mount propagation (%s) is not supported: a mount made in the micro-VM cannot propagate back to the host across virtio-fs (use HostToContainer): %w", m.Destination, o, errdefs.ErrNotImplemented)
			}
		}
	}
	return nil
}

// unenforced lists what the spec asks for that the agent does not apply, so
// that nobody takes it for applied.
func unenforced(spec *specs.Spec) []string {
	var w []string
	l := spec.Linux
	if spec.Process.ApparmorProfile != "" {
		w = append(w, "AppArmor profile "+spec.Process.ApparmorProfile+" not applied: no AppArmor in the guest")
	}
	if spec.Process.SelinuxLabel != "" || (l != nil && l.MountLabel != "") {
		w = append(w, "SELinux labels not applied: no SELinux in the guest")
	}
	if l != nil && l.Resources != nil && (l.Resources.BlockIO != nil || len(l.Resources.HugepageLimits) > 0 || l.Resources.Network != nil || len(l.Resources.Rdma) > 0) {
		w = append(w, "blkio, hugepage, network and rdma limits not applied")
	}
	return w
}

// childError explains why a child did not get to where it should have.
func childError(what string, m jail.Msg, err error, p *process) error {
	if err == nil && m.Type == jail.MsgError {
		return fmt.Errorf("%s: %s", what, m.Error)
	}
	if err == nil {
		err = fmt.Errorf("unexpected message %q", m.Type)
	}
	exited, status := p.exited, &p.status
	if p.execID != "" {
		exited, status = p.helperExited, &p.helperStatus
	}
	select {
	case <-exited:
		return fmt.Errorf("%s: the child exited with status %d before it was ready (%v)", what, *status, err)
	case <-time.After(500 * time.Millisecond):
	}
	return fmt.Errorf("%s: %w", what, err)
}

// startChild forks a child subcommand for p with the fd layout of jail.Main.
// The child is placed into the container's cgroup as it is created, and
// forked into the PID namespace at pidNS when that is not "".
func (a *Agent) startChild(p *process, cmd string, cfg *jail.Config, pidNS string, sys *syscall.SysProcAttr) error {
	files, err := p.makeStdio()
	if err != nil {
		return err
	}
	defer func() { // the child's ends: it has its own copies once forked
		for _, f := range files {
			f.Close()
		}
	}()
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer cfgR.Close()
	syncConn, syncChild, err := jail.NewSyncPair()
	if err != nil {
		cfgW.Close()
		return err
	}
	defer syncChild.Close()
	p.sync = syncConn

	if p.c.cgroup != "" {
		cgfd, err := unix.Open(p.c.cgroup, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			cfgW.Close()
			return fmt.Errorf("open cgroup %s: %w", p.c.cgroup, err)
		}
		defer unix.Close(cgfd)
		sys.UseCgroupFD = true
		sys.CgroupFD = cgfd
	}
	attr := &syscall.ProcAttr{
		Dir:   "/",
		Env:   []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
		Files: []uintptr{files[0].Fd(), files[1].Fd(), files[2].Fd(), cfgR.Fd(), syncChild.Fd()},
		Sys:   sys,
	}
	onExit := p.onExit
	if cmd == jail.ExecCmd {
		onExit = p.onHelperExit
	}
	fork := func() (int, error) { return a.reaper.forkExec(a.self, []string{a.self, cmd}, attr, onExit) }
	var pid int
	if pidNS != "" {
		pid, err = forkInPIDNamespace(pidNS, fork)
	} else {
		pid, err = fork()
	}
	if err != nil {
		cfgW.Close()
		return fmt.Errorf("start %s: %w", cmd, err)
	}
	if cmd == jail.InitCmd {
		p.pidv.Store(int32(pid))
	} else {
		a.mu.Lock()
		p.helper = pid
		a.mu.Unlock()
	}
	go func() {
		_ = json.NewEncoder(cfgW).Encode(cfg)
		cfgW.Close()
	}()
	return nil
}

// startInit lets a created container's init exec its program.
func (a *Agent) startInit(c *container) (int, error) {
	p := c.init
	p.mu.Lock()
	if p.started {
		p.mu.Unlock()
		return 0, fmt.Errorf("container %q already started: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	if err := p.checkAttachedLocked(); err != nil {
		p.mu.Unlock()
		return 0, err
	}
	p.started = true
	p.mu.Unlock()
	defer func() {
		p.sync.Close()
	}()
	if err := p.sync.Send(jail.Msg{Type: jail.MsgStart}); err != nil {
		return 0, fmt.Errorf("start container %s: %w", c.id, err)
	}
	m, _, err := p.sync.Recv(syncTimeout)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, fmt.Errorf("start container %s: no answer from its init in %s", c.id, syncTimeout)
	}
	if err == nil && m.Type == jail.MsgError {
		// The child exits right after saying why: let the exit land first so
		// that the container's state is consistent when we answer.
		select {
		case <-p.exited:
		case <-time.After(2 * time.Second):
		}
		return 0, fmt.Errorf("start container %s: %s", c.id, m.Error)
	}
	// EOF: the program was executed (the sync socket is close-on-exec).
	log.Printf("container %s: started, pid %d", c.id, p.pid())
	return p.pid(), nil
}

// startExec starts a new process in a running container.
func (a *Agent) startExec(c *container, execID string, procJSON []byte, stdio *api.StdioConfig) (int, error) {
	if err := validID("exec", execID); err != nil {
		return 0, err
	}
	var proc specs.Process
	if err := json.Unmarshal(procJSON, &proc); err != nil {
		return 0, fmt.Errorf("process: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if len(proc.Args) == 0 {
		return 0, fmt.Errorf("process has no args: %w", errdefs.ErrInvalidArgument)
	}
	if stdio == nil {
		stdio = &api.StdioConfig{}
	}
	init := c.init
	if !init.running() || !init.isStarted() {
		return 0, fmt.Errorf("container %q is not running: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	p := newProcess(c, execID, stdio)
	a.mu.Lock()
	if c.execs[execID] != nil {
		a.mu.Unlock()
		return 0, fmt.Errorf("exec %q: %w", execID, errdefs.ErrAlreadyExists)
	}
	c.execs[execID] = p
	var conns []struct {
		stream string
		conn   net.Conn
	}
	for _, s := range []string{api.StreamStdin, api.StreamStdout, api.StreamStderr} {
		k := streamKey{c.id, execID, s}
		if conn := a.pending[k]; conn != nil {
			conns = append(conns, struct {
				stream string
				conn   net.Conn
			}{s, conn})
			delete(a.pending, k)
		}
	}
	a.mu.Unlock()
	fail := func(err error) (int, error) {
		a.mu.Lock()
		delete(c.execs, execID)
		a.mu.Unlock()
		for _, sc := range conns {
			sc.conn.Close()
		}
		p.abandon()
		return 0, err
	}
	p.mu.Lock()
	for _, sc := range conns {
		if err := p.reserveLocked(sc.stream); err != nil {
			p.mu.Unlock()
			return fail(err)
		}
	}
	if err := p.checkAttachedLocked(); err != nil {
		p.mu.Unlock()
		return fail(err)
	}
	p.started = true
	p.mu.Unlock()

	var join []jail.Namespace
	for _, t := range []specs.LinuxNamespaceType{specs.IPCNamespace, specs.UTSNamespace, specs.NetworkNamespace, specs.PIDNamespace, specs.CgroupNamespace, specs.MountNamespace} {
		name := nsProcName[t]
		path := fmt.Sprintf("/proc/%d/ns/%s", init.pid(), name)
		if sameNamespace(path, "/proc/self/ns/"+name) {
			continue
		}
		join = append(join, jail.Namespace{Type: string(t), Path: path})
	}
	cfg := &jail.Config{ContainerID: c.id, Process: &proc, Terminal: stdio.Terminal, Join: join}
	if c.spec.Linux != nil {
		cfg.Seccomp = c.spec.Linux.Seccomp // exec processes are filtered as the init is
	}
	if err := a.startChild(p, jail.ExecCmd, cfg, "", &syscall.SysProcAttr{}); err != nil {
		return fail(err)
	}
	defer p.sync.Close()
	for {
		m, fd, err := p.sync.Recv(syncTimeout)
		if err == nil && m.Type == jail.MsgPty && fd >= 0 {
			p.setPty(fd)
			continue
		}
		if err == nil && m.Type == jail.MsgPid && m.Pid > 0 {
			// The helper is alive until it reads "ack", so its child cannot
			// have been reaped by us yet.
			p.pidv.Store(int32(m.Pid))
			a.reaper.register(m.Pid, p.onExit)
			_ = p.sync.Send(jail.Msg{Type: jail.MsgAck})
			break
		}
		if p.helper > 0 {
			unix.Kill(p.helper, unix.SIGKILL)
		}
		return fail(childError("exec "+execID, m, err, p))
	}
	for _, sc := range conns {
		p.startStream(sc.stream, sc.conn)
	}
	log.Printf("container %s: exec %s started, pid %d", c.id, execID, p.pid())
	return p.pid(), nil
}

var nsProcName = map[specs.LinuxNamespaceType]string{
	specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts", specs.NetworkNamespace: "net",
	specs.PIDNamespace: "pid", specs.CgroupNamespace: "cgroup", specs.MountNamespace: "mnt",
}

func sameNamespace(a, b string) bool {
	var sa, sb unix.Stat_t
	if unix.Stat(a, &sa) != nil || unix.Stat(b, &sb) != nil {
		return false
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// attachStream connects a stdio connection to its process, or keeps it for an
// exec process that is not started yet. On success the caller answers "ok"
// and then calls start. Everything StartProcess checks is recorded before the
// answer, so a client that got "ok" may start the process at once.
func (a *Agent) attachStream(h api.StdioHeader, conn net.Conn) (start func(), err error) {
	a.mu.Lock()
	c := a.containers[h.Container]
	if c == nil || c.deleting || (c.init == nil && h.Exec == "") {
		a.mu.Unlock()
		return nil, fmt.Errorf("container %q: %w", h.Container, errdefs.ErrNotFound)
	}
	if h.Exec != "" && c.execs[h.Exec] == nil {
		defer a.mu.Unlock()
		k := streamKey{h.Container, h.Exec, h.Stream}
		if a.pending[k] != nil {
			return nil, fmt.Errorf("%s of exec %q already attached: %w", h.Stream, h.Exec, errdefs.ErrAlreadyExists)
		}
		a.pending[k] = conn // taken by StartProcess
		return func() {}, nil
	}
	p := c.init
	if h.Exec != "" {
		p = c.execs[h.Exec]
	}
	a.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return nil, fmt.Errorf("process %q of %q already started: attach its stdio before StartProcess: %w", h.Exec, h.Container, errdefs.ErrFailedPrecondition)
	}
	if err := p.reserveLocked(h.Stream); err != nil {
		return nil, err
	}
	return func() { p.startStream(h.Stream, conn) }, nil
}

// checkOOMByID is the OOM watcher's callback.
func (a *Agent) checkOOMByID(id string) {
	a.mu.Lock()
	c := a.containers[id]
	a.mu.Unlock()
	if c != nil {
		a.checkOOM(c)
	}
}

// checkOOM emits an OOM event when the container's oom_kill count went up.
func (a *Agent) checkOOM(c *container) {
	c.oomMu.Lock()
	defer c.oomMu.Unlock()
	n := oomKills(c.cgroup)
	if n > c.oomSeen {
		c.oomSeen = n
		seq := a.events.add(api.Event_OOM, c.id)
		log.Printf("container %s: OOM kill (%d so far), event %d", c.id, n, seq)
	}
}

// pids lists the container's processes: its cgroup's, or without one, the
// processes in its init's PID namespace.
func (a *Agent) pids(c *container) ([]int, error) {
	if c.cgroup != "" {
		return cgroupPids(c.cgroup)
	}
	if c.init.pid() <= 0 {
		return nil, nil
	}
	ns := fmt.Sprintf("/proc/%d/ns/pid", c.init.pid())
	if c.sharedPID || sameNamespace(ns, "/proc/self/ns/pid") {
		// No PID namespace of its own and no cgroup: only what we started.
		var pids []int
		a.mu.Lock()
		for _, p := range append([]*process{c.init}, mapValues(c.execs)...) {
			if p.running() {
				pids = append(pids, p.pid())
			}
		}
		a.mu.Unlock()
		return pids, nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if sameNamespace(fmt.Sprintf("/proc/%d/ns/pid", pid), ns) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

func mapValues(m map[string]*process) []*process {
	var out []*process
	for _, p := range m {
		out = append(out, p)
	}
	return out
}

// signalAll signals every process of the container.
func (a *Agent) signalAll(c *container, sig unix.Signal) error {
	pids, err := a.pids(c)
	if err != nil {
		return err
	}
	if c.init.running() {
		pids = append(pids, c.init.pid())
	}
	for _, pid := range pids {
		if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("kill %d: %w", pid, err)
		}
	}
	return nil
}

// deleteContainer removes a container; with force (or if it was never
// started) its processes are killed first.
func (a *Agent) deleteContainer(id string, force bool) error {
	c, err := a.container(id)
	if err != nil {
		return err
	}
	a.mu.Lock()
	if c.deleting {
		a.mu.Unlock()
		return fmt.Errorf("container %q is being deleted: %w", id, errdefs.ErrFailedPrecondition)
	}
	started := c.init.isStarted()
	if c.init.running() && started && !force {
		a.mu.Unlock()
		return fmt.Errorf("container %q is running: %w", id, errdefs.ErrFailedPrecondition)
	}
	c.deleting = true
	a.mu.Unlock()

	if c.init.running() || c.cgroup != "" {
		_ = a.signalAll(c, unix.SIGKILL)
	}
	for _, p := range append([]*process{c.init}, mapValues(c.execs)...) {
		if p.running() && force {
			unix.Kill(p.pid(), unix.SIGKILL)
		}
	}
	select {
	case <-c.init.exited:
	case <-time.After(10 * time.Second):
		a.mu.Lock()
		c.deleting = false
		a.mu.Unlock()
		return fmt.Errorf("container %q: init did not exit after SIGKILL", id)
	}
	a.oom.remove(id)
	var cgErr error
	if c.cgroup != "" {
		// Processes it left behind (no PID namespace) go too.
		for i := 0; i < 50; i++ {
			pids, _ := cgroupPids(c.cgroup)
			if len(pids) == 0 {
				break
			}
			for _, pid := range pids {
				unix.Kill(pid, unix.SIGKILL)
			}
			time.Sleep(10 * time.Millisecond)
		}
		cgErr = a.cg.remove(c.cgroup)
	}
	a.mu.Lock()
	delete(a.containers, id)
	for k, conn := range a.pending {
		if k.container == id {
			conn.Close()
			delete(a.pending, k)
		}
	}
	a.mu.Unlock()
	for _, p := range append([]*process{c.init}, mapValues(c.execs)...) {
		p.closeAll()
	}
	log.Printf("container %s: deleted", id)
	return cgErr
}

// Shutdown kills and deletes every container.
func (a *Agent) Shutdown() {
	a.mu.Lock()
	var ids []string
	for id, c := range a.containers {
		if c.init != nil {
			ids = append(ids, id)
		}
	}
	a.mu.Unlock()
	for _, id := range ids {
		if err := a.deleteContainer(id, true); err != nil {
			log.Printf("shutdown: %v", err)
		}
	}
	if a.cg.err == nil {
		if err := unix.Rmdir(a.cg.root); err != nil && !errors.Is(err, unix.ENOENT) {
			log.Printf("shutdown: remove %s: %v", a.cg.root, err)
		}
	}
}

// forkInPIDNamespace runs fork on a thread whose children go to the PID
// namespace at path (setns CLONE_NEWPID changes only where this thread's
// children are born). The thread is never given back to other goroutines:
// it ends with the goroutine.
func forkInPIDNamespace(path string, fork func() (int, error)) (int, error) {
	type result struct {
		pid int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // no unlock: the thread exits with us
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{0, fmt.Errorf("pid namespace %s: %w", path, err)}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWPID); err != nil {
			ch <- result{0, fmt.Errorf("join pid namespace %s: %w", path, err)}
			return
		}
		pid, err := fork()
		ch <- result{pid, err}
	}()
	r := <-ch
	return r.pid, r.err
}

// isNamespace reports whether path is a namespace file of the given kind
// ("pid", "net", ...).
func isNamespace(path, kind string) bool {
	l, err := os.Readlink(path)
	return err == nil && strings.HasPrefix(l, kind+":[")
}
