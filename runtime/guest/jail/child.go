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

	"github.com/boxlite/boxlite-shim/runtime/guest/seccomp"
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
	// Seccomp is the container's profile, for its init and every exec.
	Seccomp *specs.LinuxSeccomp `json:"seccomp,omitempty"`
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
		_ = sendSyncFd(sync, Msg{Type: MsgError, Error: err.Error()}, -1)
		return 125
	}
	var cfg Config
	if err := json.NewDecoder(os.NewFile(3, "config")).Decode(&cfg); err != nil {
		return fail(fmt.Errorf("read config: %w", err))
	}
	if cfg.Process == nil || len(cfg.Process.Args) == 0 {
		return fail(errors.New("no process args"))
	}
	// Compiled first: a profile that cannot be honoured fails the process
	// before anything is set up, never runs it unfiltered.
	var filter *seccomp.Filter
	if cfg.Seccomp != nil {
		var err error
		if filter, err = seccomp.Compile(cfg.Seccomp); err != nil {
			return fail(fmt.Errorf("seccomp profile: %w", err))
		}
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
		if err := sendSyncFd(sync, Msg{Type: MsgReady}, -1); err != nil {
			return 1
		}
		m, err := recvSyncFd(sync)
		if err != nil || m.Type != MsgStart {
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
	// As runc: without no_new_privs, loading a filter needs CAP_SYS_ADMIN,
	// so it goes before the identity drops it; with it, as late as can be.
	if filter != nil && !p.NoNewPrivileges {
		if err := filter.Load(); err != nil {
			return fail(err)
		}
	}
	if err := setIdentity(p, lastCap); err != nil {
		return fail(err)
	}
	loadLate := func() error {
		if filter != nil && p.NoNewPrivileges {
			return filter.Load()
		}
		return nil
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
		if err := loadLate(); err != nil {
			return fail(err)
		}
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
	// The filter is this thread's, and so the forked program's.
	if err := loadLate(); err != nil {
		return fail(err)
	}
	pid, err := syscall.ForkExec(path, p.Args, attr)
	if err != nil {
		return fail(fmt.Errorf("exec %s: %w", p.Args[0], err))
	}
	if err := sendSyncFd(sync, Msg{Type: MsgPid, Pid: pid}, -1); err != nil {
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
