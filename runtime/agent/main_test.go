package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/boxlite/boxlite-shim/test/ctrd"
)

// These tests run the real agent binary on this host, as root, as the
// guest's init (the libkrun test double now runs it as the child of a
// stand-in for libkrun's init: runtime/vmm TestAgentUnderInit): PID 1 of
// fresh mount/PID/UTS/IPC namespaces,
// its listening Unix socket inherited as fd 3 (LISTEN_FDS,
// BOXLITE_VSOCK_PORTS), BOXLITE_TEST_DOUBLE=1. Containers get a root
// filesystem made of a static busybox.

var (
	agentBin   string // built in TestMain
	busybox    string // "" when missing
	skipReason string // why the agent tests cannot run here
	applets    []string
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	// The agents these tests run must not show up in an end-to-end suite's
	// host-wide leftover checks: hold the suites' lock too.
	defer ctrd.LockSuites()()
	if os.Geteuid() != 0 {
		skipReason = "the agent tests need root (namespaces, mounts, cgroups)"
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "boxlite-agent-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	agentBin = filepath.Join(dir, "boxlite-agent")
	build := exec.Command("go", "build", "-o", agentBin, "github.com/boxlite/boxlite-shim/cmd/boxlite-agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if os.Getenv("BOXLITE_AGENT_RACE") == "1" { // debugging: the agent under the race detector
		build = exec.Command("go", "build", "-race", "-o", agentBin, "github.com/boxlite/boxlite-shim/cmd/boxlite-agent")
		build.Env = append(os.Environ(), "CGO_ENABLED=1")
	}
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build boxlite-agent: %v\n%s", err, out)
		return 1
	}
	deps := os.Getenv("BOXLITE_DEPS")
	if deps == "" {
		deps = "/var/cache/boxlite-deps"
	}
	busybox = filepath.Join(deps, "busybox", "busybox")
	if _, err := os.Stat(busybox); err != nil {
		skipReason = fmt.Sprintf("no static busybox at %s (make deps provides it)", busybox)
		busybox = ""
	} else if out, err := exec.Command(busybox, "--list").Output(); err != nil {
		skipReason = fmt.Sprintf("%s --list: %v", busybox, err)
		busybox = ""
	} else {
		applets = strings.Fields(string(out))
	}
	return m.Run()
}

// testAgent is one agent process and a client connected to it.
type testAgent struct {
	t          *testing.T
	dir        string
	rootfs     string
	cgroupName string // the agent's cgroup root, relative to the cgroup2 root
	cmd        *exec.Cmd
	log        *syncBuffer
	c          *Client
	exited     chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startAgent(t *testing.T) *testAgent {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	dir := t.TempDir()
	ta := &testAgent{t: t, dir: dir, log: &syncBuffer{}, exited: make(chan error, 1)}
	ta.rootfs = makeRootfs(t, filepath.Join(dir, "rootfs"))
	ta.cgroupName = fmt.Sprintf("boxlite-test-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "_"))

	sock := filepath.Join(dir, "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	lf, err := ul.File()
	l.Close() // the agent holds the dup
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(agentBin, "-cgroup-root", "/sys/fs/cgroup/"+ta.cgroupName)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LISTEN_FDS=1", "LISTEN_PID=1", "BOXLITE_VSOCK_PORTS=1024", "BOXLITE_TEST_DOUBLE=1"}
	cmd.ExtraFiles = []*os.File{lf}
	cmd.Stdout, cmd.Stderr = ta.log, ta.log
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC,
		Pdeathsig:  syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lf.Close()
	ta.cmd = cmd
	go func() { ta.exited <- cmd.Wait() }()
	t.Cleanup(ta.stop)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, sock)
	if err != nil {
		t.Fatalf("dial agent: %v\nagent log:\n%s", err, ta.log)
	}
	ta.c = c
	return ta
}

// stop shuts the agent down and checks that it left nothing behind: no
// mount under the test's directory, no cgroup.
func (ta *testAgent) stop() {
	t := ta.t
	if ta.c != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		if err := ta.c.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		cancel()
		ta.c.Close()
	}
	select {
	case err := <-ta.exited:
		if err != nil && ta.c != nil {
			t.Errorf("agent exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("agent did not exit after Shutdown")
		ta.cmd.Process.Kill()
		<-ta.exited
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(mi), "\n") {
			if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], ta.dir) {
				t.Errorf("mount left on the host: %s", line)
			}
		}
	}
	if root := ctrd.Cgroup2Mount(); root != "" {
		if _, err := os.Stat(filepath.Join(root, ta.cgroupName)); err == nil {
			t.Errorf("cgroup %s left on the host", filepath.Join(root, ta.cgroupName))
			_ = os.Remove(filepath.Join(root, ta.cgroupName))
		}
	}
	if strings.Contains(ta.log.String(), "DATA RACE") {
		t.Errorf("the race detector found a data race in the agent")
	}
	if t.Failed() {
		t.Logf("agent log:\n%s", ta.log)
	}
}

// hostCgroupDir is the container's leaf as this host sees it.
func (ta *testAgent) hostCgroupDir(id string) string {
	root := ctrd.Cgroup2Mount()
	if root == "" {
		return ""
	}
	return filepath.Join(root, ta.cgroupName, id)
}

func makeRootfs(t *testing.T, root string) string {
	t.Helper()
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp", "etc", "home/user", "root"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(root, "tmp"), 0o1777)
	os.Chown(filepath.Join(root, "home/user"), 1000, 1000)
	data, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range applets {
		if a != "busybox" {
			os.Symlink("busybox", filepath.Join(root, "bin", a))
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
		"etc/group":  "root:x:0:\nwheel:x:10:\nuser:x:1000:\n",
	}
	for p, s := range files {
		if err := os.WriteFile(filepath.Join(root, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// defaultCaps are containerd's default capabilities.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// testSpec is close to containerd's default spec (no network namespace: the
// agent's is the pod's).
func testSpec(args ...string) *specs.Spec {
	caps := &specs.LinuxCapabilities{Bounding: defaultCaps, Effective: defaultCaps, Permitted: defaultCaps}
	return &specs.Spec{
		Version:  specs.Version,
		Hostname: "boxlite-test",
		Root:     &specs.Root{Path: "rootfs"},
		Process: &specs.Process{
			Args:            args,
			Env:             []string{"PATH=/bin", "TERM=xterm"},
			Cwd:             "/",
			Capabilities:    caps,
			NoNewPrivileges: true,
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.MountNamespace}},
			MaskedPaths: []string{
				"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
				"/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/sys/devices/virtual/powercap", "/proc/scsi",
			},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

// result is what a process did.
type result struct {
	stdout, stderr string
	status         uint32
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// run creates, starts and waits for a container, and deletes it.
func (ta *testAgent) run(t *testing.T, id string, spec *specs.Spec, stdin string) result {
	t.Helper()
	ctx := ctxT(t, 20*time.Second)
	var stdout, stderr syncBuffer
	pio := IO{Stdout: &stdout, Stderr: &stderr}
	if stdin != "" {
		pio.Stdin = strings.NewReader(stdin)
	}
	_, att, err := ta.c.Create(ctx, id, spec, ta.rootfs, pio)
	if err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	defer func() {
		if err := ta.c.Delete(ctx, id, true); err != nil {
			t.Errorf("delete %s: %v", id, err)
		}
	}()
	if _, err := ta.c.Start(ctx, id); err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	st, err := ta.c.Wait(ctx, id, "")
	if err != nil {
		t.Fatalf("wait %s: %v", id, err)
	}
	att.Wait()
	return result{stdout.String(), stderr.String(), st.Status}
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
