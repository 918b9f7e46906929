package vmm

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/boxlite/boxlite-shim/kernel"
	"github.com/boxlite/boxlite-shim/reaper"
	"github.com/boxlite/boxlite-shim/runtime/agent/api"
)

// Names inside the state directory.
const (
	AgentSocketName = "agent.sock"
	// readySocketName is where the shim listens for the guest's readiness
	// (Config.ReadyPort).
	readySocketName = "ready.sock"
	// ConsoleLogName is the guest console as the shim keeps it (capped, see
	// Config.ConsoleLogMax); the part before the last rotation is in
	// ConsoleLogName + ".1". consolePipeName is the FIFO libkrun writes it to.
	ConsoleLogName  = "console.log"
	consolePipeName = "console.pipe"
	VMMLogName      = "vmm.log"
	KernelDirName   = "krunfw"
	KernelSOName    = "libkrunfw.so.5"

	// DefaultLibkrun is what boxlite-vmm dlopens when LibkrunPath is "".
	DefaultLibkrun = "libkrun.so.1"
	// VMMBinaryName is the VMM executable looked for beside the shim.
	VMMBinaryName = "boxlite-vmm"
	// DefaultReadyTimeout applies when Config.ReadyTimeout is 0.
	DefaultReadyTimeout = 10 * time.Second
	// DefaultConsoleLogMax applies when Config.ConsoleLogMax is 0.
	DefaultConsoleLogMax = 1 << 20
)

// jailCaps are the capabilities the jailed VMM keeps (cmd/boxlite-vmm's
// boxlite_jail_caps): CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID,
// CAP_SETGID, CAP_SETUID and CAP_SETFCAP, what libkrun's virtio-fs uses on
// behalf of the guest's root.
const jailCaps = 1<<unix.CAP_CHOWN | 1<<unix.CAP_DAC_OVERRIDE | 1<<unix.CAP_FOWNER | 1<<unix.CAP_FSETID |
	1<<unix.CAP_SETGID | 1<<unix.CAP_SETUID | 1<<unix.CAP_SETFCAP

const (
	// groupGrace bounds the wait, after the VMM is reaped, for the rest of
	// its process group to be reaped.
	groupGrace = 5 * time.Second
	// teardownTimeout bounds the cleanup of a failed Start.
	teardownTimeout = 10 * time.Second
	// maxSocketPath is the longest path a Unix socket address can hold.
	maxSocketPath = 107
	// maxVCPUs is libkrun's x86_64 MP table limit (MAX_SUPPORTED_CPUS).
	maxVCPUs = 254
)

// Config is one sandbox's VMM.
type Config struct {
	// ID names the sandbox in errors and logs.
	ID string
	// JailDir is the VMM's jail: the root of its own mount namespace (see
	// cmd/boxlite-vmm). It exists and is the caller's; the VMM mounts /proc
	// and /dev under it, and what it writes there is untrusted.
	JailDir string
	// StateDir, inside JailDir, is created by Start (its parent must exist;
	// it must not) and removed by Stop, or by Start when it fails. Short
	// enough for <StateDir>/agent.sock to be a Unix socket path (107 bytes).
	StateDir string
	// RootDir, inside JailDir, is the guest root (virtio-fs); it exists and
	// is the caller's.
	RootDir string
	// Kernel is the variant to boot; Kernel.Path is staged as libkrunfw.so.5.
	Kernel kernel.Source
	// LibkrunPath is the libkrun to load: "" means "libkrun.so.1" through
	// the dynamic loader's search path (where the test double is refused);
	// otherwise it is passed to the VMM as is and, if it is the test double,
	// allowed with a warning logged on every Start.
	LibkrunPath string
	// VMMBinary is the boxlite-vmm executable; "" means beside os.Executable().
	VMMBinary string
	// CPUs (1–254, libkrun's x86_64 MP table; at most the kernel's
	// CONFIG_NR_CPUS where its image tells) and MemoryMiB size the guest.
	CPUs      int
	MemoryMiB int
	// AgentPort is the guest vsock port the agent listens on; it is bridged
	// to the Unix socket AgentSocket().
	AgentPort uint32
	// ReadyPort is the vsock port of the host the workload connects to, to
	// send api.ReadyLine once it serves: libkrun connects that to a socket
	// the shim listens on (krun_add_vsock_port2, listen=false). Start waits
	// for it, or for the VMM's end; it never probes the agent's socket.
	ReadyPort uint32
	// Workload is the guest's program (a path inside RootDir) and its
	// arguments; Env its environment (K=V); Workdir its working directory
	// in the guest ("" = /).
	Workload []string
	Env      []string
	Workdir  string
	// NetNS is the path of the network namespace the VMM runs in (a pod's,
	// prepared by CNI); "" = a new, empty one (NewNetNS), or the caller's.
	NetNS string
	// NewNetNS gives the VMM a network namespace of its own with nothing in
	// it (when NetNS is ""): libkrun's TSI then reaches nothing of the host.
	NewNetNS bool
	// OOMScoreAdj, when set, is the VMM's oom_score_adj (the container
	// spec's: otherwise it keeps the shim's, which is far lower).
	OOMScoreAdj *int
	// ConsoleLogMax bounds console.log (bytes); the part before goes to
	// console.log.1, so at most twice this is kept. 0 = DefaultConsoleLogMax.
	ConsoleLogMax int64
	// Net is the guest's virtio-net device (libkrun's TAP backend); nil =
	// none, and libkrun's TSI gives the guest the VMM's network instead if
	// the kernel has libkrunfw's TSI patch (else the guest has no network:
	// see the package documentation).
	Net *Net
	// ReadyTimeout bounds the wait for the guest's readiness; 0 means 10s.
	ReadyTimeout time.Duration

	// extraEnv is added to the VMM's environment (tests: KRUN_DOUBLE_*).
	extraEnv []string
}

// Net is a virtio-net device backed by a TAP device of the VMM's network
// namespace.
type Net struct {
	// Tap is the TAP device's name; MAC the guest interface's address.
	Tap string
	MAC net.HardwareAddr
}

// VMM is a running (or ended) VMM process.
type VMM struct {
	cfg   Config
	r     *reaper.Reaper
	proc  *reaper.Process
	group *reaper.Group
	// state is StateDir, opened before the VMM runs: the shim reaches what
	// is in it only through this descriptor and without following links
	// (the VMM is untrusted and can write there).
	state   *os.File
	console *consoleCopier
	timing  Timing
	// noTSI: the kernel has no TSI patch (or cannot be told to have it),
	// so the guest never gets TSI (boxlite-vmm -no-tsi).
	noTSI bool

	mu      sync.Mutex
	stopped bool
}

// Start launches the sandbox's VMM and returns once its agent socket is
// ready. On any error everything it made is undone first: the VMM's process
// group killed and reaped, StateDir removed.
//
// Errors match errdefs: ErrInvalidArgument for a bad Config,
// ErrAlreadyExists when StateDir exists, ErrFailedPrecondition when libkrun
// or boxlite-vmm cannot be used (missing, or the test double found without
// being named), ErrNotFound when the kernel file cannot be loaded, and
// context.DeadlineExceeded when the agent socket is not ready within
// ReadyTimeout. An error for a VMM that exited includes the end of vmm.log
// and console.log.
func Start(ctx context.Context, cfg Config, r *reaper.Reaper) (_ *VMM, retErr error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	// What the kernel's image tells: whether it has the TSI patch, and the
	// most CPUs it brings up. A file that cannot be read tells nothing (no
	// TSI, no bound): boxlite-vmm then fails to load it, and says so.
	kf, err := kernel.InspectCached(cfg.Kernel.Path)
	if err != nil {
		kf = kernel.Features{}
	}
	if err := kernel.CheckCPUs(cfg.Kernel.Name, kf, cfg.CPUs); err != nil {
		return nil, fmt.Errorf("vmm: sandbox %s: %w", cfg.ID, err)
	}
	bin, err := cfg.vmmBinary()
	if err != nil {
		return nil, err
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = DefaultReadyTimeout
	}
	if err := os.Mkdir(cfg.StateDir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("vmm: sandbox %s: state directory %s already exists: %w", cfg.ID, cfg.StateDir, errdefs.ErrAlreadyExists)
		}
		return nil, fmt.Errorf("vmm: sandbox %s: %w", cfg.ID, err)
	}
	v := &VMM{cfg: cfg, r: r, noTSI: kf.TSI != kernel.Yes}
	if v.state, err = os.OpenFile(cfg.StateDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0); err != nil {
		_ = os.Remove(cfg.StateDir)
		return nil, fmt.Errorf("vmm: sandbox %s: %w", cfg.ID, err)
	}
	defer func() {
		if retErr != nil {
			tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), teardownTimeout)
			defer cancel()
			if err := v.teardown(tctx); err != nil {
				retErr = fmt.Errorf("%w (and cleaning up: %v)", retErr, err)
			}
		}
	}()

	staged, err := v.stageKernel()
	if err != nil {
		return nil, err
	}
	if v.console, err = startConsole(int(v.state.Fd()), cfg.ConsoleLogMax); err != nil {
		return nil, fmt.Errorf("vmm: sandbox %s: console: %w", cfg.ID, err)
	}
	ready, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(cfg.StateDir, readySocketName), Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("vmm: sandbox %s: the ready socket: %w", cfg.ID, err)
	}
	defer ready.Close()
	args, double := v.args(staged)
	if v.noTSI {
		log.G(ctx).WithField("sandbox", cfg.ID).WithField("kernel", cfg.Kernel.Name).
			Debugf("the kernel %s: the guest gets no TSI", kf.TSIPhrase())
	}
	switch {
	case double && IsTestEngine(cfg.LibkrunPath):
		log.G(ctx).WithField("sandbox", cfg.ID).WithField("libkrun", cfg.LibkrunPath).
			Warn("libkrun_path is the emulated engine: QEMU software emulation standing in for libkrun + KVM (tests only)")
	case double:
		log.G(ctx).WithField("sandbox", cfg.ID).WithField("libkrun", cfg.LibkrunPath).
			Warn("libkrun_path is the libkrun test double: the sandbox's workload runs as a host process, NOT in a VM (tests only)")
	}
	logf, err := os.OpenFile(filepath.Join(cfg.StateDir, VMMLogName), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("vmm: sandbox %s: %w", cfg.ID, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = cfg.StateDir
	cmd.Env = v.env()
	cmd.Stdout, cmd.Stderr = logf, logf
	// New mount, PID, IPC and UTS namespaces: boxlite-vmm builds its jail in
	// the first (see cmd/boxlite-vmm), and from the others it cannot see or
	// reach the host's processes and IPC objects.
	clone := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS)
	if cfg.NetNS == "" && cfg.NewNetNS {
		clone |= unix.CLONE_NEWNET
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Cloneflags: clone}
	v.timing.Spawn = time.Now()
	proc, err := startIn(cfg.NetNS, func() (*reaper.Process, error) { return r.Start(cmd) })
	logf.Close()
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("vmm: sandbox %s: cannot run %s (install boxlite-vmm beside the shim: make vmm): %w: %w", cfg.ID, bin, err, errdefs.ErrFailedPrecondition)
		}
		return nil, fmt.Errorf("vmm: sandbox %s: starting %s: %w", cfg.ID, bin, err)
	}
	v.proc = proc
	if v.group, err = r.RegisterGroup(proc.Pid()); err != nil {
		return nil, fmt.Errorf("vmm: sandbox %s: %w", cfg.ID, err)
	}
	if cfg.OOMScoreAdj != nil {
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/oom_score_adj", proc.Pid()), []byte(strconv.Itoa(*cfg.OOMScoreAdj)), 0); err != nil {
			return nil, fmt.Errorf("vmm: sandbox %s: setting the VMM's oom_score_adj to %d: %w", cfg.ID, *cfg.OOMScoreAdj, err)
		}
	}
	if err := v.waitReady(ctx, ready); err != nil {
		return nil, err
	}
	v.timing.Ready = time.Now()
	v.timing.Enter = v.enteredAt()
	return v, nil
}

// Timing is when a VMM's start reached each phase: the VMM process spawned,
// boxlite-vmm calling krun_start_enter (it says so on its log; zero if it
// could not be read), the guest saying it serves.
type Timing struct {
	Spawn, Enter, Ready time.Time
}

// Timing says how the VMM's start went.
func (v *VMM) Timing() Timing { return v.timing }

// enteredAt reads boxlite-vmm's "krun_start_enter at <ns>" line from its log.
func (v *VMM) enteredAt() time.Time {
	f, err := openIn(v.state, VMMLogName, unix.O_RDONLY)
	if err != nil {
		return time.Time{}
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, 64<<10))
	const marker = "boxlite-vmm: krun_start_enter at "
	i := strings.LastIndex(string(b), marker)
	if i < 0 {
		return time.Time{}
	}
	rest := string(b[i+len(marker):])
	if j := strings.IndexByte(rest, '\n'); j >= 0 {
		rest = rest[:j]
	}
	ns, err := strconv.ParseInt(rest, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// Pid is the VMM's process ID (also its process group ID).
func (v *VMM) Pid() int { return v.proc.Pid() }

// StateDir is the sandbox's VMM state directory.
func (v *VMM) StateDir() string { return v.cfg.StateDir }

// AgentSocket is the host end of the agent's vsock port: <StateDir>/agent.sock.
func (v *VMM) AgentSocket() string { return filepath.Join(v.cfg.StateDir, AgentSocketName) }

// ConsoleLog is the guest console: <StateDir>/console.log.
func (v *VMM) ConsoleLog() string { return filepath.Join(v.cfg.StateDir, ConsoleLogName) }

// KernelLibrary is the staged kernel: <StateDir>/krunfw/libkrunfw.so.5.
func (v *VMM) KernelLibrary() string {
	return filepath.Join(v.cfg.StateDir, KernelDirName, KernelSOName)
}

// Done is closed when the VMM process has exited and been reaped.
func (v *VMM) Done() <-chan struct{} { return v.proc.Done() }

// Exit returns how the VMM process ended, once it has. Its status is the
// VMM's, never a container's (see the package documentation).
func (v *VMM) Exit() (reaper.Exit, bool) { return v.proc.Exit() }

// Stop kills the VMM's process group (the VMM and, with the test double, the
// workload), waits until the reaper has reaped the VMM and no member of the
// group is left, and removes StateDir. It is idempotent: after one Stop has
// succeeded, the others return nil at once. If ctx ends first, Stop returns
// its error and may be called again.
func (v *VMM) Stop(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.stopped {
		return nil
	}
	if err := v.teardown(ctx); err != nil {
		return fmt.Errorf("vmm: sandbox %s: stop: %w", v.cfg.ID, err)
	}
	v.stopped = true
	return nil
}

// teardown kills and reaps the group (if started) and removes StateDir. It
// removes StateDir even when the group could not be reaped in time (the
// error says so); the group stays registered with the reaper until it has.
func (v *VMM) teardown(ctx context.Context) error {
	var errs []error
	if v.proc != nil {
		if err := v.killGroup(ctx); err != nil {
			errs = append(errs, err)
		} else if v.group != nil {
			v.group.Unregister()
		}
	}
	if v.console != nil {
		v.console.close()
	}
	if v.state != nil {
		v.state.Close()
	}
	if err := os.RemoveAll(v.cfg.StateDir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// killGroup SIGKILLs the VMM's process group and waits until the VMM has been
// reaped and no member of the group is left.
func (v *VMM) killGroup(ctx context.Context) error {
	pgid := v.proc.Pid()
	_ = unix.Kill(-pgid, unix.SIGKILL)
	_ = v.proc.Signal(unix.SIGKILL)
	select {
	case <-v.proc.Done():
	case <-ctx.Done():
		return fmt.Errorf("VMM %d not reaped: %w", pgid, ctx.Err())
	}
	// The VMM is gone; its group's other members (orphans, reparented to
	// the subreaper) keep pgid from being reused until they are reaped.
	deadline := time.Now().Add(groupGrace)
	for unix.Kill(-pgid, 0) == nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("process group %d still has members %v %s after SIGKILL: nobody reaps them (is the shim a subreaper?)", pgid, reaper.GroupMembers(pgid), groupGrace)
		}
		_ = unix.Kill(-pgid, unix.SIGKILL)
		v.r.Reap()
		select {
		case <-time.After(5 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("process group %d not empty: %w", pgid, ctx.Err())
		}
	}
	return nil
}

func (c *Config) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("vmm: sandbox %s: "+format+": %w", append([]any{c.ID}, append(args, errdefs.ErrInvalidArgument)...)...)
	}
	switch {
	case c.ID == "":
		return bad("empty sandbox ID")
	case !filepath.IsAbs(c.JailDir):
		return bad("jail directory %q is not an absolute path", c.JailDir)
	case !inside(c.JailDir, c.StateDir):
		return bad("state directory %q is not inside the jail %s", c.StateDir, c.JailDir)
	case len(filepath.Join(c.StateDir, AgentSocketName)) > maxSocketPath:
		return bad("state directory %s is too long: %s must fit in %d bytes (a Unix socket path)", c.StateDir, AgentSocketName, maxSocketPath)
	case !inside(c.JailDir, c.RootDir):
		return bad("guest root %q is not inside the jail %s", c.RootDir, c.JailDir)
	case c.Kernel.Path == "":
		return bad("no kernel file for variant %q", c.Kernel.Name)
	case c.CPUs < 1 || c.CPUs > maxVCPUs:
		return bad("%d vCPUs: must be 1-%d (libkrun's x86_64 MP table holds at most %d)", c.CPUs, maxVCPUs, maxVCPUs)
	case c.MemoryMiB < 1 || int64(c.MemoryMiB) > 1<<32-1:
		return bad("%d MiB of memory: out of range", c.MemoryMiB)
	case c.AgentPort == 0:
		return bad("no agent vsock port")
	case c.ReadyPort == 0 || c.ReadyPort == c.AgentPort:
		return bad("ready port %d: want a vsock port other than the agent's (%d)", c.ReadyPort, c.AgentPort)
	case len(c.Workload) == 0 || c.Workload[0] == "":
		return bad("no workload")
	case c.Net != nil && (c.Net.Tap == "" || len(c.Net.Tap) >= unix.IFNAMSIZ || len(c.Net.MAC) != 6):
		return bad("network device: TAP %q, MAC %q: want a TAP name and an Ethernet address", c.Net.Tap, c.Net.MAC)
	}
	if fi, err := os.Stat(c.RootDir); err != nil || !fi.IsDir() {
		return bad("guest root %s is not a directory", c.RootDir)
	}
	return nil
}

// inside reports whether path is a clean absolute path strictly inside dir.
func inside(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && filepath.IsAbs(path) && filepath.Clean(path) == path &&
		rel != "." && rel != ".." && !strings.HasPrefix(rel, "../")
}

// inJail is path (inside JailDir) as the jailed VMM sees it.
func (c *Config) inJail(path string) string {
	rel, _ := filepath.Rel(c.JailDir, path)
	return "/" + rel
}

func (c *Config) vmmBinary() (string, error) {
	if c.VMMBinary != "" {
		return c.VMMBinary, nil
	}
	return BesideShim(VMMBinaryName)
}

// BesideShim is the path of the named program in the directory of the running
// executable, where the shim's companions (boxlite-vmm, boxlite-agent) are
// installed.
func BesideShim(name string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("vmm: locating %s beside the shim: %w", name, err)
	}
	return filepath.Join(filepath.Dir(self), name), nil
}

// stageKernel links <StateDir>/krunfw/libkrunfw.so.5 to the kernel file.
func (v *VMM) stageKernel() (string, error) {
	dir := filepath.Join(v.cfg.StateDir, KernelDirName)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("vmm: sandbox %s: staging the kernel: %w", v.cfg.ID, err)
	}
	staged := filepath.Join(dir, KernelSOName)
	if err := os.Symlink(v.cfg.Kernel.Path, staged); err != nil {
		return "", fmt.Errorf("vmm: sandbox %s: staging the kernel: %w", v.cfg.ID, err)
	}
	return staged, nil
}

// args are boxlite-vmm's arguments; double reports the test double.
func (v *VMM) args(stagedKernel string) (args []string, double bool) {
	c := &v.cfg
	lib := DefaultLibkrun
	if c.LibkrunPath != "" {
		lib = c.LibkrunPath
	}
	args = []string{"-libkrun", lib}
	if c.LibkrunPath != "" && IsTestDouble(c.LibkrunPath) {
		double = true
		args = append(args, "-allow-test-double")
	}
	// -jail, -libkrun and -krunfw are the host's paths (boxlite-vmm loads
	// the libraries before it pivots into the jail); the others are the
	// jail's.
	args = append(args,
		"-jail", c.JailDir,
		"-krunfw", stagedKernel,
		"-cpus", strconv.Itoa(c.CPUs),
		"-memory-mib", strconv.Itoa(c.MemoryMiB),
		"-root", c.inJail(c.RootDir),
		"-vsock", fmt.Sprintf("%d:%s", c.AgentPort, c.inJail(v.AgentSocket())),
		"-vsock-connect", fmt.Sprintf("%d:%s", c.ReadyPort, c.inJail(filepath.Join(c.StateDir, readySocketName))),
		"-console", c.inJail(filepath.Join(c.StateDir, consolePipeName)),
	)
	if c.Workdir != "" {
		args = append(args, "-workdir", c.Workdir)
	}
	if c.Net != nil {
		args = append(args, "-net-tap", c.Net.Tap, "-net-mac", c.Net.MAC.String())
	}
	if v.noTSI {
		args = append(args, "-no-tsi")
	}
	for _, e := range c.Env {
		args = append(args, "-env", e)
	}
	args = append(args, "--")
	return append(args, c.Workload...), double
}

// env is the VMM's environment: a fixed PATH and the library path (the staged
// kernel first, then libkrun's directory, then the shim's LD_LIBRARY_PATH).
func (v *VMM) env() []string {
	libpath := []string{filepath.Join(v.cfg.StateDir, KernelDirName)}
	if strings.Contains(v.cfg.LibkrunPath, "/") {
		libpath = append(libpath, filepath.Dir(v.cfg.LibkrunPath))
	}
	for _, d := range filepath.SplitList(os.Getenv("LD_LIBRARY_PATH")) {
		if d != "" {
			libpath = append(libpath, d)
		}
	}
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LD_LIBRARY_PATH=" + strings.Join(libpath, ":"),
	}
	return append(env, v.cfg.extraEnv...)
}

// waitReady waits until the guest says it serves (one api.ReadyLine on the
// ready socket), the VMM exits, ctx ends or ReadyTimeout passes. It neither
// sleeps nor polls: it waits on the accept, the VMM's end and the timer.
func (v *VMM) waitReady(ctx context.Context, ready *net.UnixListener) error {
	timer := time.NewTimer(v.cfg.ReadyTimeout)
	defer timer.Stop()
	said := make(chan error, 1)
	go func() {
		c, err := ready.Accept()
		if err != nil {
			said <- err
			return
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(v.cfg.ReadyTimeout))
		b := make([]byte, len(api.ReadyLine))
		n, err := io.ReadFull(c, b)
		if string(b[:n]) != api.ReadyLine {
			said <- fmt.Errorf("the guest connected to the ready port but said %q (%v)", b[:n], err)
			return
		}
		said <- nil
	}()
	// Whatever happens, the listener goes: Accept returns.
	defer ready.Close()
	select {
	case err := <-said:
		if err != nil {
			return fmt.Errorf("vmm: sandbox %s: %w%s", v.cfg.ID, err, v.logTails())
		}
		select {
		case <-v.proc.Done():
			return v.exitedError()
		default:
			return nil
		}
	case <-v.proc.Done():
		return v.exitedError()
	case <-ctx.Done():
		return fmt.Errorf("vmm: sandbox %s: waiting for the guest to be ready: %w", v.cfg.ID, ctx.Err())
	case <-timer.C:
		return &kindError{kind: context.DeadlineExceeded, msg: fmt.Sprintf(
			"vmm: sandbox %s: the guest did not say it was ready within %s%s", v.cfg.ID, v.cfg.ReadyTimeout, v.logTails())}
	}
}

// exitedError describes a VMM that exited before it was ready, classified
// by boxlite-vmm's own exit codes when its message confirms them (a
// workload may exit with the same numbers).
func (v *VMM) exitedError() error {
	e, _ := v.proc.Exit()
	var how string
	switch {
	case e.Unknown:
		how = "exit status unknown"
	case e.Signaled:
		how = fmt.Sprintf("killed by signal %d", e.Status-128)
	default:
		how = fmt.Sprintf("exit status %d", e.Status)
	}
	vmmLog, _ := tail(v.state, VMMLogName)
	msg := fmt.Sprintf("vmm: sandbox %s: the VMM exited before the guest was ready (%s)%s", v.cfg.ID, how, v.logTails())
	var kind error
	switch {
	case e.Signaled || e.Unknown:
	case e.Status == 3 && strings.Contains(vmmLog, "boxlite-vmm: libkrun is not available"):
		kind = errdefs.ErrFailedPrecondition
	case e.Status == 4 && strings.Contains(vmmLog, "boxlite-vmm: refusing"):
		kind = errdefs.ErrFailedPrecondition
	case e.Status == 6 && strings.Contains(vmmLog, "boxlite-vmm: kernel library"):
		kind = errdefs.ErrNotFound
	case e.Status == 8 && strings.Contains(vmmLog, "boxlite-vmm: unsupported libkrun"):
		kind = errdefs.ErrFailedPrecondition
	case e.Status == 2 && strings.Contains(vmmLog, "boxlite-vmm: "):
		kind = errdefs.ErrInvalidArgument
	}
	if kind == nil {
		// The command-line limits end a VMM with no word of why: the guest
		// kernel's with exit 0 (it panics before its console is up),
		// libkrun's with an abort (a Rust panic; the Go runtime then
		// exits 2). Say so when this configuration breaks one.
		if libkrun, guest := v.cfg.cmdlineProblems(); e.Status == 0 && !e.Unknown && guest != "" {
			msg += "; " + guest
		} else if e.Status != 0 && libkrun != "" {
			msg += "; " + libkrun
		}
		return errors.New(msg)
	}
	return &kindError{kind: kind, msg: msg}
}

// LogTails is the end of vmm.log and of the guest console (console.log), as
// errors quote them ("; vmm.log: ...; console.log: ..."), once what the VMM
// wrote to the console has been kept; a console with nothing in it says so.
// After Stop it is "" (the state directory is gone).
func (v *VMM) LogTails() string { return v.logTails() }

func (v *VMM) logTails() string {
	if v.console != nil && v.console.r != nil {
		v.console.settle(time.Second)
	}
	var b strings.Builder
	for _, name := range []string{VMMLogName, ConsoleLogName} {
		t, ok := tail(v.state, name)
		switch {
		case t != "":
			fmt.Fprintf(&b, "; %s: %s", name, t)
		case ok && name == ConsoleLogName:
			fmt.Fprintf(&b, "; %s: (empty: the guest wrote nothing to its console)", name)
		}
	}
	return b.String()
}

// tail returns the last lines (at most 2 KiB) of file name in dir, joined
// by " | ", and whether the file could be read.
func tail(dir *os.File, name string) (string, bool) {
	f, err := openIn(dir, name, unix.O_RDONLY)
	if err != nil {
		return "", false
	}
	defer f.Close()
	const max = 2048
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		_, _ = f.Seek(-max, io.SeekEnd)
	}
	b, _ := io.ReadAll(io.LimitReader(f, max))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 1 && len(b) == max {
		lines = lines[1:] // the first is probably cut
	}
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, " | "), true
}

// kindError is an error with an errdefs (or context) class.
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

// IsTestDouble reports whether the shared library at path is one of the
// project's test implementations of libkrun (it exports krun_test_double):
// the host double (test/libkrun-double) or the emulated engine
// (test/libkrun-qemu, see IsTestEngine). It reads the ELF file and loads
// nothing. A bare name (no "/") is not looked up and reports false.
func IsTestDouble(path string) bool { return exports(path, "krun_test_double") }

// IsTestEngine reports whether the shared library at path is the emulated
// engine (test/libkrun-qemu: it exports krun_test_engine_qemu besides
// krun_test_double): a test implementation of libkrun whose guests are real,
// booted under QEMU's software emulation instead of KVM. Like the host
// double it is used only when named explicitly (IsTestDouble holds for it
// too), but its workload runs in a guest kernel, not on the host.
func IsTestEngine(path string) bool {
	return exports(path, "krun_test_double") && exports(path, "krun_test_engine_qemu")
}

// exports reports whether the ELF shared library at path defines the dynamic
// symbol name.
func exports(path, name string) bool {
	if !strings.Contains(path, "/") {
		return false
	}
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	syms, err := f.DynamicSymbols()
	if err != nil {
		return false
	}
	for _, s := range syms {
		if s.Name == name && s.Section != elf.SHN_UNDEF {
			return true
		}
	}
	return false
}
