package jail

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The hidden subcommands that start container processes. The agent runs them
// with fds 0-2 = the process's stdio (unused with a terminal), 3 = a pipe with
// the Config (JSON), 4 = the sync socket (syncmsg.go).
//
// init-container: started by the agent already in the container's new
// namespaces (clone flags) and cgroup; it joins the namespaces given by path,
// prepares the root filesystem and pivots into it, allocates the PTY, says
// "ready", waits for "start", then takes the process's identity and execs
// its program: the container's init is this very process.
//
// exec-process: started in the agent's namespaces and in the container's
// cgroup; it joins the init's namespaces (setns on this locked thread, after
// unshare(CLONE_FS) so that the mount namespace can be entered from a
// multi-threaded program), takes the identity, and forks the program from
// this thread so that it lands in the container's PID namespace. It reports
// the program's PID and exits when the agent acknowledges it; the program is
// then reparented to the agent, which reaps it.
const (
	InitCmd = "init-container"
	ExecCmd = "exec-process"
)

// Namespace is an existing namespace for the child to join.
type Namespace struct {
	Type string `json:"type"` // specs.LinuxNamespaceType
	Path string `json:"path"`
}

// Config is what the agent tells a child, on fd 3.
type Config struct {
	ContainerID string          `json:"container_id"`
	Process     *specs.Process  `json:"process"`
	Terminal    bool            `json:"terminal"`
	Join        []Namespace     `json:"join,omitempty"`
	Spec        *specs.Spec     `json:"spec,omitempty"`   // init: mounts, hostname, paths, sysctl
	Rootfs      string          `json:"rootfs,omitempty"` // init
	NewNS       map[string]bool `json:"new_ns,omitempty"` // init: namespaces made by clone
}

// Main runs the subcommand mode (InitCmd or ExecCmd) in the re-executed
// agent, on its locked main thread. It returns the exit code: 125 after saying
// on the sync socket why it failed, 1 when the agent went away, and for
// ExecCmd 0 once the agent acknowledged the program's PID. InitCmd does not
// return otherwise: it becomes the container's program.
func Main(mode string) int {
	unix.CloseOnExec(3)
	unix.CloseOnExec(4)
	sync := 4
	fail := func(err error) int {
		_ = sendSyncFd(sync, Msg{Type: "error", Error: err.Error()}, -1)
		return 125
	}
	var cfg Config
	if err := json.NewDecoder(os.NewFile(3, "config")).Decode(&cfg); err != nil {
		return fail(fmt.Errorf("read config: %w", err))
	}
	if cfg.Process == nil || len(cfg.Process.Args) == 0 {
		return fail(errors.New("no process args"))
	}
	lastCap := lastCapability()
	if err := joinNamespaces(cfg.Join); err != nil {
		return fail(err)
	}
	if mode == InitCmd {
		if err := setupContainer(&cfg); err != nil {
			return fail(err)
		}
	}
	var pty *os.File
	if cfg.Terminal {
		var err error
		if pty, err = openPty(sync, cfg.Process.ConsoleSize); err != nil {
			return fail(fmt.Errorf("terminal: %w", err))
		}
	}
	if mode == InitCmd {
		if err := sendSyncFd(sync, Msg{Type: "ready"}, -1); err != nil {
			return 1
		}
		m, err := recvSyncFd(sync)
		if err != nil || m.Type != "start" {
			return 1 // the agent went away or deleted the container
		}
	}
	p := cfg.Process
	path, err := lookPath(p.Args[0], envValue(p.Env, "PATH"))
	if err != nil {
		return fail(err)
	}
	env := p.Env
	if envValue(env, "HOME") == "" {
		env = append(env, "HOME="+homeOf(p.User.UID))
	}
	for _, rl := range p.Rlimits {
		res, ok := rlimits[rl.Type]
		if !ok {
			return fail(fmt.Errorf("unknown rlimit %q", rl.Type))
		}
		if err := syscall.Setrlimit(res, &syscall.Rlimit{Cur: rl.Soft, Max: rl.Hard}); err != nil {
			return fail(fmt.Errorf("setrlimit %s: %w", rl.Type, err))
		}
	}
	umask := 0o022
	if p.User.Umask != nil {
		umask = int(*p.User.Umask)
	}
	unix.Umask(umask)
	if err := setIdentity(p, lastCap); err != nil {
		return fail(err)
	}
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if mode == InitCmd {
		if pty != nil {
			if err := takeTerminal(pty); err != nil {
				return fail(err)
			}
		}
		if err := unix.Chdir(cwd); err != nil {
			return fail(fmt.Errorf("chdir %s: %w", cwd, err))
		}
		defaultIgnoredSignals()
		err := syscall.Exec(path, p.Args, env)
		return fail(fmt.Errorf("exec %s: %w", p.Args[0], err))
	}

	attr := &syscall.ProcAttr{Dir: cwd, Env: env, Files: []uintptr{0, 1, 2}, Sys: &syscall.SysProcAttr{Setsid: true}}
	if pty != nil {
		fd := pty.Fd()
		attr.Files = []uintptr{fd, fd, fd}
		attr.Sys.Setctty = true
		attr.Sys.Ctty = 0
	}
	defaultIgnoredSignals()
	pid, err := syscall.ForkExec(path, p.Args, attr)
	if err != nil {
		return fail(fmt.Errorf("exec %s: %w", p.Args[0], err))
	}
	if err := sendSyncFd(sync, Msg{Type: "pid", Pid: pid}, -1); err != nil {
		unix.Kill(pid, unix.SIGKILL)
		return 1
	}
	_, _ = recvSyncFd(sync) // "ack": the agent has registered the PID
	return 0
}

// defaultIgnoredSignals sets every signal this process ignores back to its
// default action, since an exec keeps ignored signals ignored: a container's
// process must not inherit what the agent's parent happened to ignore (under
// the test double that is the host's environment). Signals with a Go handler
// are left alone; exec resets those itself. The all-zero kernel sigaction is
// SIG_DFL with no flags and an empty mask, whatever the architecture's layout.
func defaultIgnoredSignals() {
	const sigIgn = 1
	var dfl [4]uint64
	for sig := 1; sig <= 64; sig++ {
		if sig == int(unix.SIGKILL) || sig == int(unix.SIGSTOP) {
			continue
		}
		var old [4]uint64
		if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), 0, uintptr(unsafe.Pointer(&old)), 8, 0, 0); e != 0 {
			continue
		}
		if old[0] == sigIgn {
			unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&dfl)), 0, 8, 0, 0)
		}
	}
}

// joinNamespaces enters existing namespaces on this (locked) thread. The
// mount namespace goes last, after unsharing the filesystem attributes the
// Go runtime's threads share.
func joinNamespaces(join []Namespace) error {
	type opened struct {
		fd   int
		flag int
		typ  string
	}
	var fds []opened
	var mnt *opened
	defer func() {
		for _, o := range fds {
			unix.Close(o.fd)
		}
	}()
	for _, j := range join {
		flag, ok := nsFlags[specs.LinuxNamespaceType(j.Type)]
		if !ok || j.Type == string(specs.UserNamespace) {
			return fmt.Errorf("joining a %s namespace is not supported", j.Type)
		}
		fd, err := unix.Open(j.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s namespace %s: %w", j.Type, j.Path, err)
		}
		fds = append(fds, opened{fd, flag, j.Type})
	}
	for i := range fds {
		if fds[i].flag == unix.CLONE_NEWNS {
			mnt = &fds[i]
			continue
		}
		if err := unix.Setns(fds[i].fd, fds[i].flag); err != nil {
			return fmt.Errorf("join %s namespace: %w", fds[i].typ, err)
		}
	}
	if mnt != nil {
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			return fmt.Errorf("unshare fs attributes: %w", err)
		}
		if err := unix.Setns(mnt.fd, unix.CLONE_NEWNS); err != nil {
			return fmt.Errorf("join mount namespace: %w", err)
		}
	}
	return nil
}

// CloneFlag is the clone(2) flag that makes a namespace of type t.
func CloneFlag(t specs.LinuxNamespaceType) (int, bool) {
	f, ok := nsFlags[t]
	return f, ok
}

var nsFlags = map[specs.LinuxNamespaceType]int{
	specs.PIDNamespace:     unix.CLONE_NEWPID,
	specs.NetworkNamespace: unix.CLONE_NEWNET,
	specs.MountNamespace:   unix.CLONE_NEWNS,
	specs.IPCNamespace:     unix.CLONE_NEWIPC,
	specs.UTSNamespace:     unix.CLONE_NEWUTS,
	specs.CgroupNamespace:  unix.CLONE_NEWCGROUP,
	specs.UserNamespace:    unix.CLONE_NEWUSER,
	specs.TimeNamespace:    unix.CLONE_NEWTIME,
}

// openPty allocates a PTY in the container's devpts, hands the master to the
// agent and returns the slave.
func openPty(sync int, size *specs.Box) (*os.File, error) {
	ptmx := "/dev/pts/ptmx"
	if _, err := os.Stat(ptmx); err != nil {
		ptmx = "/dev/ptmx"
	}
	master, err := unix.Open(ptmx, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", ptmx, err)
	}
	defer unix.Close(master)
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		return nil, fmt.Errorf("unlockpt: %w", err)
	}
	n, err := unix.IoctlGetUint32(master, unix.TIOCGPTN)
	if err != nil {
		return nil, fmt.Errorf("ptsname: %w", err)
	}
	name := "/dev/pts/" + strconv.Itoa(int(n))
	slave, err := os.OpenFile(name, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	if size != nil && size.Width > 0 && size.Height > 0 {
		_ = unix.IoctlSetWinsize(master, unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(size.Height), Col: uint16(size.Width)})
	}
	if err := sendSyncFd(sync, Msg{Type: "pty"}, master); err != nil {
		slave.Close()
		return nil, fmt.Errorf("send pty master: %w", err)
	}
	return slave, nil
}

// takeTerminal makes slave the controlling terminal and stdio of this process.
func takeTerminal(slave *os.File) error {
	if _, err := unix.Setsid(); err != nil {
		return fmt.Errorf("setsid: %w", err)
	}
	fd := int(slave.Fd())
	if err := unix.IoctlSetInt(fd, unix.TIOCSCTTY, 0); err != nil {
		return fmt.Errorf("set controlling terminal: %w", err)
	}
	for i := 0; i < 3; i++ {
		if err := unix.Dup3(fd, i, 0); err != nil {
			return fmt.Errorf("dup terminal: %w", err)
		}
	}
	if fd > 2 {
		slave.Close()
	}
	return nil
}

// setIdentity takes the process's user, groups and capabilities, and sets
// no_new_privs. The credentials are per thread in the kernel: they are set
// with raw syscalls on this locked thread, the one that execs (or forks the
// program), so that they are exactly what the program gets.
func setIdentity(p *specs.Process, lastCap int) error {
	caps := p.Capabilities
	if caps != nil {
		for c := 0; c <= lastCap; c++ {
			if !hasCap(caps.Bounding, c) {
				if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
					return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
				}
			}
		}
		if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("keepcaps: %w", err)
		}
	}
	u := p.User
	gids := u.AdditionalGids
	if len(gids) == 0 {
		if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0); e != 0 {
			return fmt.Errorf("setgroups: %w", e)
		}
	} else if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(gids)), uintptr(unsafe.Pointer(&gids[0])), 0); e != 0 {
		return fmt.Errorf("setgroups %v: %w", gids, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(u.GID), uintptr(u.GID), uintptr(u.GID)); e != 0 {
		return fmt.Errorf("setgid %d: %w", u.GID, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(u.UID), uintptr(u.UID), uintptr(u.UID)); e != 0 {
		return fmt.Errorf("setuid %d: %w", u.UID, e)
	}
	if caps != nil {
		if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
			return fmt.Errorf("keepcaps: %w", err)
		}
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		set := func(names []string, field func(*unix.CapUserData) *uint32) {
			for _, n := range names {
				if c, ok := capByName[strings.ToUpper(n)]; ok && c <= lastCap {
					*field(&data[c/32]) |= 1 << (uint(c) % 32)
				}
			}
		}
		set(caps.Effective, func(d *unix.CapUserData) *uint32 { return &d.Effective })
		set(caps.Permitted, func(d *unix.CapUserData) *uint32 { return &d.Permitted })
		set(caps.Inheritable, func(d *unix.CapUserData) *uint32 { return &d.Inheritable })
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			return fmt.Errorf("capset: %w", err)
		}
		_ = unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
		for _, n := range caps.Ambient {
			if c, ok := capByName[strings.ToUpper(n)]; ok && c <= lastCap {
				if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(c), 0, 0); err != nil {
					return fmt.Errorf("raise ambient capability %s: %w", n, err)
				}
			}
		}
	}
	if p.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("no_new_privs: %w", err)
		}
	}
	return nil
}

func hasCap(names []string, c int) bool {
	for _, n := range names {
		if v, ok := capByName[strings.ToUpper(n)]; ok && v == c {
			return true
		}
	}
	return false
}

func lastCapability() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return len(capNames) - 1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return len(capNames) - 1
	}
	return n
}

var capNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
	"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
	"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

var capByName = func() map[string]int {
	m := make(map[string]int, len(capNames))
	for i, n := range capNames {
		m[n] = i
	}
	return m
}()

var rlimits = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE,
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK": unix.RLIMIT_STACK,
}

func envValue(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}

// lookPath finds file as a shell would, in the container's PATH, seen from
// this thread's root.
func lookPath(file, pathEnv string) (string, error) {
	if strings.Contains(file, "/") {
		if err := executable(file); err != nil {
			return "", fmt.Errorf("exec %s: %w", file, err)
		}
		return file, nil
	}
	if pathEnv == "" {
		pathEnv = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec %s: not found in PATH %s", file, pathEnv)
}

func executable(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return fmt.Errorf("%s: permission denied", path)
	}
	return nil
}

// homeOf looks uid up in the container's /etc/passwd.
func homeOf(uid uint32) string {
	b, err := os.ReadFile("/etc/passwd")
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Split(line, ":")
			if len(f) >= 6 && f[2] == strconv.FormatUint(uint64(uid), 10) && f[5] != "" {
				return f[5]
			}
		}
	}
	return "/"
}
