// Package sandbox owns one micro-VM and what the host keeps for it: the
// sandbox's directories (guest root shared with the VM, VMM state), the
// containers' root filesystems mounted under the guest root, the VMM process
// (package vmm) and the client of its guest agent (package agent), and the
// small state record that lets `shim delete` clean up after a crashed shim.
//
// It must not speak containerd's task API nor publish events (package task
// does), and it never reaps processes itself: the VMM goes through the
// scoped reaper it is given.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/boxlite/boxlite-shim/config"
	"github.com/boxlite/boxlite-shim/kernel"
	"github.com/boxlite/boxlite-shim/reaper"
	"github.com/boxlite/boxlite-shim/runtime/agent"
	"github.com/boxlite/boxlite-shim/runtime/cgmount"
	"github.com/boxlite/boxlite-shim/runtime/podnet"
	"github.com/boxlite/boxlite-shim/runtime/share"
	"github.com/boxlite/boxlite-shim/runtime/vmm"
)

// Names of the executables looked for beside the shim, and inside the guest.
const (
	AgentBinaryName = "boxlite-agent"
	// AgentPort is the vsock port the agent serves on; ReadyPort the host's
	// port it connects to to say it serves (vmm.Config.ReadyPort).
	AgentPort = 1024
	ReadyPort = 1025
	// guestAgentPath is where the agent lives in the guest root.
	guestAgentPath = "/.boxlite/boxlite-agent"
	// guestContainers holds the containers' root filesystems in the guest.
	guestContainers = "/.boxlite/containers"
	// guestNetwork describes the pod network for the agent (-network).
	guestNetwork = "/.boxlite/network.json"
)

// Timeouts of a boot: the guest's readiness (vm.ready_timeout_s, or when 0
// these) and then the first agent calls.
const (
	// readyTimeout is libkrun's: a KVM guest serves within a second or two.
	readyTimeout = vmm.DefaultReadyTimeout
	// engineReadyTimeout is the emulated engine's (test/libkrun-qemu):
	// its guests boot under QEMU's software emulation, measured 2–3 s on an
	// idle 2-core machine and many times that when the cores are busy.
	engineReadyTimeout = 120 * time.Second
	connectTimeout     = 10 * time.Second
	engineConnect      = 60 * time.Second
)

// Options describe a sandbox to create.
type Options struct {
	// Namespace and ID name the sandbox (containerd namespace, sandbox id).
	Namespace, ID string
	Config        *config.Config
	// Request is the VM the sandbox's annotations ask for (config.Request).
	Request config.Request
	// Bundle is the sandbox container's bundle: the state record goes there.
	Bundle string
	Reaper *reaper.Reaper
	// CgroupsPath is a pod sandbox's host cgroup (cgroupfs form): the VMM
	// is placed in it, where CRI reads the pod's stats; "" = none.
	CgroupsPath string
	// NetNS is the network namespace the VMM runs in (the pod's, that CNI
	// prepared); "" = a new, empty one.
	NetNS string
	// OOMScoreAdj is the sandbox container spec's: the VMM gets it.
	OOMScoreAdj *int
	// AgentBinary is the agent to run as the guest's workload; "" means
	// boxlite-agent beside the shim's executable.
	AgentBinary string
}

// Sandbox is one micro-VM.
type Sandbox struct {
	ID     string
	Kernel kernel.Source
	dir    string // <state_dir>/<namespace>/<id>
	root   string // guest root (host path)
	cfg    *config.Config
	opts   Options
	record Record
	vmm    *vmm.VMM
	share  *share.Namespace // the VMM's mount namespace, once booted
	agent  *agent.Client
	// double: libkrun is the host double (test/libkrun-double), which runs
	// the agent as a host process. engine: it is the emulated engine
	// (test/libkrun-qemu, vmm.IsTestEngine), whose guests are real: the
	// sandbox treats it as libkrun, but with an emulation's timeouts.
	double  bool
	engine  bool
	hostCG  string
	stopMu  sync.Mutex
	stopped bool
	// stopping is set when Stop begins: the VMM's end is then expected.
	stopping atomic.Bool
}

// Prepare checks the sandbox's annotations against the configuration,
// chooses and locates its kernel, and makes its directories with the agent
// in the guest root. It boots nothing. On error nothing is left behind.
func Prepare(ctx context.Context, o Options) (_ *Sandbox, retErr error) {
	cfg := o.Config
	src, err := kernel.Locate(o.Request.Kernel, cfg.KernelPolicy(), cfg.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", o.ID, err)
	}
	agentBin := o.AgentBinary
	if agentBin == "" {
		var err error
		if agentBin, err = vmm.BesideShim(AgentBinaryName); err != nil {
			return nil, fmt.Errorf("sandbox %s: %w", o.ID, err)
		}
	}
	if st, err := os.Stat(agentBin); err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("sandbox %s: guest agent %s is missing (install it beside the shim: make agent): %w", o.ID, agentBin, errdefs.ErrFailedPrecondition)
	}
	s := &Sandbox{
		ID:     o.ID,
		Kernel: src,
		dir:    filepath.Join(cfg.StateDir, o.Namespace, o.ID),
		cfg:    cfg,
		opts:   o,
	}
	if cfg.LibkrunPath != "" && vmm.IsTestDouble(cfg.LibkrunPath) {
		s.engine = vmm.IsTestEngine(cfg.LibkrunPath)
		s.double = !s.engine
	}
	s.root = filepath.Join(s.dir, "root")
	if err := os.MkdirAll(filepath.Dir(s.dir), 0o711); err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", o.ID, err)
	}
	if _, err := os.Lstat(s.dir); err == nil {
		return nil, fmt.Errorf("sandbox %s: %s already exists: %w", o.ID, s.dir, errdefs.ErrAlreadyExists)
	}
	s.record = Record{ID: o.ID, Dir: s.dir}
	if s.double {
		// Under the test double the agent runs on the host: its cgroups are
		// the host's, so each sandbox gets a cgroup root of its own.
		s.record.CgroupName = "boxlite-" + o.Namespace + "-" + o.ID
		if h := cgmount.Unified(); h != "" {
			s.hostCG = filepath.Join(h, s.record.CgroupName)
			s.record.HostCgroup = s.hostCG
		}
	}
	// The record goes first: a shim killed from here on leaves nothing
	// that `shim delete` cannot find.
	if err := s.writeRecord(); err != nil {
		return nil, err
	}
	if err := os.Mkdir(s.dir, 0o700); err != nil {
		_ = s.removeRecord()
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("sandbox %s: %s already exists: %w", o.ID, s.dir, errdefs.ErrAlreadyExists)
		}
		return nil, fmt.Errorf("sandbox %s: %w", o.ID, err)
	}
	defer func() {
		if retErr != nil {
			_ = s.Stop(context.WithoutCancel(ctx))
		}
	}()
	// The sandbox directory is the VMM's jail, and the guest writes the
	// guest root in it: a tmpfs of its own bounds what a guest can put
	// there (it is charged to the VMM's memory cgroup).
	if mib := cfg.VM.RootSizeMiB; mib > 0 {
		if err := unix.Mount("tmpfs", s.dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%dm,mode=0700", mib)); err != nil {
			return nil, fmt.Errorf("sandbox %s: mounting the sandbox's tmpfs (vm.root_size_mib = %d) on %s: %w", o.ID, mib, s.dir, err)
		}
	}
	for _, d := range []string{"proc", "sys", "dev", "tmp", "etc", strings.TrimPrefix(guestContainers, "/")} {
		if err := os.MkdirAll(filepath.Join(s.root, d), 0o755); err != nil {
			return nil, fmt.Errorf("sandbox %s: guest root: %w", o.ID, err)
		}
	}
	if err := copyFile(agentBin, filepath.Join(s.root, guestAgentPath), 0o755); err != nil {
		return nil, fmt.Errorf("sandbox %s: installing the agent in the guest root: %w", o.ID, err)
	}
	return s, nil
}

// ShareMounts makes the host files and directories the spec bind-mounts into
// container id (under CRI: /etc/hosts, /etc/resolv.conf, /etc/hostname,
// /dev/shm, volumes) reachable in the guest: each source is bind-mounted
// under the container's directory in the guest root, inside the VMM's mount
// namespace only (package share: never through a link the guest made, never
// in the host's namespace), read-only where the spec says ro (rro: every
// submount too), and the spec's source is rewritten to that guest path. The
// mounts go with UnmountRootfs.
func (s *Sandbox) ShareMounts(id string, spec *specs.Spec) error {
	if s.share == nil {
		return fmt.Errorf("container %s: the sandbox has not booted: %w", id, errdefs.ErrFailedPrecondition)
	}
	dir := filepath.Join(guestContainers, id, "mounts")
	for i := range spec.Mounts {
		m := &spec.Mounts[i]
		if !isBind(*m) || !filepath.IsAbs(m.Source) {
			continue
		}
		if _, err := os.Stat(m.Source); err != nil {
			return fmt.Errorf("container %s: bind mount source %s (for %s): %w", id, m.Source, m.Destination, err)
		}
		guest := filepath.Join(dir, fmt.Sprintf("%d-%s", i, filepath.Base(m.Source)))
		if err := s.share.Bind(m.Source, strings.TrimPrefix(guest, "/"), bindOptions(m.Options)); err != nil {
			return fmt.Errorf("container %s: sharing %s with the guest: %w", id, m.Source, err)
		}
		m.Source = guest
	}
	return nil
}

// bindOptions are the host-side options of a bind mount with OCI options o.
func bindOptions(o []string) share.BindOptions {
	var b share.BindOptions
	for _, opt := range o {
		switch opt {
		case "rbind":
			b.Recursive = true
		case "ro":
			b.ReadOnly = true
		case "rro":
			b.RecursiveReadOnly = true
		case "rw":
			b.ReadOnly = false
		}
	}
	return b
}

func isBind(m specs.Mount) bool {
	if m.Type == "bind" {
		return true
	}
	for _, o := range m.Options {
		if o == "bind" || o == "rbind" {
			return true
		}
	}
	return false
}

// MountRootfs mounts a container's root filesystem (the snapshotter's
// mounts, staged at the bundle's rootfs directory as runc's shim mounts
// them, then moved, see package share) under the guest root, and returns its
// path as the guest sees it.
func (s *Sandbox) MountRootfs(id, bundle string, mounts []mount.Mount) (string, error) {
	if len(mounts) == 0 {
		return "", fmt.Errorf("container %s: no rootfs mounts given (a bundle rootfs prepared by the caller is not supported): %w", id, errdefs.ErrInvalidArgument)
	}
	if s.share == nil {
		return "", fmt.Errorf("container %s: the sandbox has not booted: %w", id, errdefs.ErrFailedPrecondition)
	}
	guest := filepath.Join(guestContainers, id, "rootfs")
	if err := s.share.Rootfs(mounts, filepath.Join(bundle, "rootfs"), strings.TrimPrefix(guest, "/")); err != nil {
		return "", fmt.Errorf("container %s: mounting its rootfs: %w", id, err)
	}
	return guest, nil
}

// UnmountRootfs unmounts a container's root filesystem and shared mounts
// (in the VMM's namespace) and removes its directory.
func (s *Sandbox) UnmountRootfs(id string) error {
	if s.share == nil {
		return nil // not booted: nothing was mounted
	}
	if err := s.share.Remove(strings.TrimPrefix(filepath.Join(guestContainers, id), "/")); err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	return nil
}

// Boot gives the VM its pod network, starts the VMM and connects to its
// agent.
func (s *Sandbox) Boot(ctx context.Context) error {
	workload := []string{guestAgentPath, "-vsock-port", fmt.Sprint(AgentPort), "-ready-port", fmt.Sprint(ReadyPort)}
	if s.record.CgroupName != "" {
		workload = append(workload, "-cgroup-root", "/sys/fs/cgroup/"+s.record.CgroupName)
	}
	nic, err := s.attachNetwork(ctx)
	if err != nil {
		return err
	}
	if nic != nil {
		workload = append(workload, "-network", guestNetwork)
	}
	v, err := vmm.Start(ctx, vmm.Config{
		ID:            s.ID,
		JailDir:       s.dir,
		StateDir:      filepath.Join(s.dir, "vmm"),
		RootDir:       s.root,
		Kernel:        s.Kernel,
		LibkrunPath:   s.cfg.LibkrunPath,
		CPUs:          s.opts.Request.CPUs,
		MemoryMiB:     s.opts.Request.MemoryMiB,
		AgentPort:     AgentPort,
		ReadyPort:     ReadyPort,
		NetNS:         s.opts.NetNS,
		NewNetNS:      s.opts.NetNS == "",
		OOMScoreAdj:   s.opts.OOMScoreAdj,
		Net:           nic,
		ConsoleLogMax: int64(s.cfg.VM.ConsoleLogMaxKiB) << 10,
		ReadyTimeout:  s.readyTimeout(),
		Workload:      workload,
		Env:           []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
	}, s.opts.Reaper)
	if err != nil {
		return fmt.Errorf("sandbox %s: %w", s.ID, err)
	}
	s.vmm = v
	tm := v.Timing()
	if !tm.Enter.IsZero() {
		Span(ctx, s.ID, "vmm-spawn", tm.Spawn, tm.Enter)
		Span(ctx, s.ID, "guest-ready", tm.Enter, tm.Ready)
	}
	s.record.VMMPid = v.Pid()
	if err := s.writeRecord(); err != nil {
		return err
	}
	connect := connectTimeout
	if s.engine {
		connect = engineConnect
	}
	dctx, cancel := context.WithTimeout(ctx, connect)
	defer cancel()
	// The guest said it serves: one connection, no retries.
	c, err := agent.Connect(dctx, v.AgentSocket(), v.DialAgent)
	if err != nil {
		return fmt.Errorf("sandbox %s: connecting to the guest agent: %w", s.ID, err)
	}
	s.agent = c
	if s.share, err = share.Open(v.Pid(), "/"+filepath.Base(s.root)); err != nil {
		return fmt.Errorf("sandbox %s: %w", s.ID, err)
	}
	if s.opts.CgroupsPath != "" {
		// The agent is up: it and the VMM are all the group holds, and
		// what they start from now on inherits the cgroup.
		made, err := placeInHostCgroup(s.opts.CgroupsPath, v.Pid())
		s.record.PodCgroups = made
		if werr := s.writeRecord(); werr != nil {
			return werr
		}
		if err != nil {
			log.G(ctx).WithError(err).WithField("sandbox", s.ID).Warn("placing the VMM in the pod's host cgroup: it is not counted in the hierarchies the error names")
		}
	}
	if info, err := c.Info(dctx); err == nil {
		log.G(ctx).WithField("sandbox", s.ID).WithField("kernel", s.Kernel.Name).WithField("environment", info.Environment).
			WithField("warnings", info.Warnings).Info("sandbox booted")
	}
	return nil
}

// readyTimeout bounds the guest's boot: vm.ready_timeout_s, or when it is 0
// libkrun's default, or the emulated engine's.
func (s *Sandbox) readyTimeout() time.Duration {
	switch {
	case s.cfg.VM.ReadyTimeoutS > 0:
		return time.Duration(s.cfg.VM.ReadyTimeoutS) * time.Second
	case s.engine:
		return engineReadyTimeout
	default:
		return readyTimeout
	}
}

// attachNetwork prepares the pod's network namespace (if the sandbox has one
// with an interface to give) for the VM's network device, and describes the
// interface for the agent. The record names what it makes before it exists,
// so that a shim killed meanwhile leaves nothing `shim delete` cannot find.
func (s *Sandbox) attachNetwork(ctx context.Context) (*vmm.Net, error) {
	if s.opts.NetNS == "" {
		return nil, nil
	}
	s.record.Net = &podnet.Attachment{NetNS: s.opts.NetNS, Tap: podnet.TapName}
	if err := s.writeRecord(); err != nil {
		return nil, err
	}
	att, err := podnet.Attach(s.opts.NetNS)
	if err != nil {
		s.record.Net = nil
		return nil, fmt.Errorf("sandbox %s: %w", s.ID, err)
	}
	s.record.Net = att
	if err := s.writeRecord(); err != nil {
		return nil, err
	}
	if att == nil {
		log.G(ctx).WithField("sandbox", s.ID).WithField("netns", s.opts.NetNS).
			Info("the network namespace has no interface to give the VM: the guest gets libkrun's TSI")
		return nil, nil
	}
	if err := podnet.WriteFile(filepath.Join(s.root, guestNetwork), att.Guest); err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", s.ID, err)
	}
	mac, err := net.ParseMAC(att.Guest.MAC)
	if err != nil {
		return nil, fmt.Errorf("sandbox %s: pod interface %s: %w", s.ID, att.PodLink, err)
	}
	return &vmm.Net{Tap: att.Tap, MAC: mac}, nil
}

// Request is the VM the sandbox's annotations asked for.
func (s *Sandbox) Request() config.Request { return s.opts.Request }

// Agent is the client of the sandbox's guest agent (nil before Boot).
func (s *Sandbox) Agent() *agent.Client { return s.agent }

// VMMPid is the VMM process's PID (0 before Boot).
func (s *Sandbox) VMMPid() int {
	if s.vmm == nil {
		return 0
	}
	return s.vmm.Pid()
}

// Stopping reports whether Stop has been called: a VMM exit after it is
// expected, not a failure.
func (s *Sandbox) Stopping() bool { return s.stopping.Load() }

// Done is closed when the VMM has exited.
func (s *Sandbox) Done() <-chan struct{} { return s.vmm.Done() }

// ExitReason describes how the VMM ended, for logs and errors, with the
// end of its log and of the guest console (a guest kernel's panic is there)
// while the sandbox's state is still there.
func (s *Sandbox) ExitReason() string {
	e, ok := s.vmm.Exit()
	switch {
	case !ok:
		return "the VMM is running"
	case e.Unknown:
		return fmt.Sprintf("the VMM (pid %d) exited, status unknown%s", e.Pid, s.vmm.LogTails())
	case e.Signaled:
		return fmt.Sprintf("the VMM (pid %d) was killed by signal %d%s", e.Pid, e.Status-128, s.vmm.LogTails())
	default:
		return fmt.Sprintf("the VMM (pid %d) exited with status %d%s", e.Pid, e.Status, s.vmm.LogTails())
	}
}

// Stop shuts the agent down (briefly), stops the VMM, unmounts everything
// under the guest root, and removes the sandbox's directories, state record
// and (under the test double) host cgroup. It is idempotent.
func (s *Sandbox) Stop(ctx context.Context) error {
	s.stopping.Store(true)
	s.stopMu.Lock()
	defer s.stopMu.Unlock()
	if s.stopped {
		return nil
	}
	var errs []error
	if s.agent != nil {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		select {
		case <-s.vmm.Done():
		default:
			if err := s.agent.Shutdown(sctx); err != nil {
				log.G(ctx).WithError(err).WithField("sandbox", s.ID).Debug("agent shutdown")
			}
		}
		cancel()
		s.agent.Close()
	}
	if s.vmm != nil {
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		if err := s.vmm.Stop(sctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	if s.share != nil {
		// With the VMM gone, this was the namespace's last reference: its
		// mounts go with it.
		s.share.Close()
		s.share = nil
	}
	if err := cleanupHost(s.record); err != nil {
		errs = append(errs, err)
	}
	if err := s.removeRecord(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sandbox %s: stop: %w", s.ID, err)
	}
	s.stopped = true
	return nil
}

// Span logs, at debug level, how long phase of sandbox or task id took
// ("boxlite phase" with id, phase and ms fields): an operator's view of
// where a start spends its time, and what `make bench` reads.
func Span(ctx context.Context, id, phase string, from, to time.Time) {
	log.G(ctx).WithField("id", id).WithField("phase", phase).
		WithField("ms", float64(to.Sub(from).Microseconds())/1000).Debug("boxlite phase")
}

func copyFile(src, dst string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	// Always a copy, never a hard link: the guest can write its root, and
	// must not reach the host's binary (nor another sandbox's) through it.
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
