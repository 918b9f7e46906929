package vmm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/boxlite/boxlite-shim/kernel"
	"github.com/boxlite/boxlite-shim/reaper"
	"github.com/boxlite/boxlite-shim/runtime/agent"
	"github.com/boxlite/boxlite-shim/runtime/share"
)

// These tests run the real VMM on the emulated engine (test/libkrun-qemu):
// each kernel variant's bytes boot under QEMU's software emulation, as
// libkrun boots them, with the real guest agent as the workload. A boot takes
// a few seconds; the tests are few.

var qe struct {
	once    sync.Once
	skip    string
	err     error
	engine  string // libkrun.so.1 of the engine
	agent   string // boxlite-agent, static
	busybox string // a static busybox, for a container's root filesystem
	netBlob string // the real net kernel
}

const guestAgent = "/.boxlite/boxlite-agent"

func needQEMU(t *testing.T) {
	t.Helper()
	need(t)
	qe.once.Do(setupQEMU)
	if qe.err != nil {
		t.Fatalf("building the emulated engine: %v", qe.err)
	}
	if qe.skip != "" {
		t.Skip(qe.skip)
	}
}

func setupQEMU() {
	deps := depsDir()
	vsock := filepath.Join(deps, "qemu-engine", "vhost-device-vsock")
	switch {
	case lookPath("qemu-system-x86_64") == "":
		qe.skip = "no qemu-system-x86_64: the emulated engine needs Debian's qemu-system-x86 (make deps installs it)"
	case !executable("/usr/lib/qemu/virtiofsd"):
		qe.skip = "no /usr/lib/qemu/virtiofsd: the emulated engine needs the C virtiofsd of Debian 12's qemu-system-common"
	case !executable(vsock):
		qe.skip = fmt.Sprintf("no vhost-device-vsock at %s: make deps (step qemu-engine) downloads it", vsock)
	case !tb.netReal:
		qe.skip = fmt.Sprintf("no net kernel at %s: make deps builds it", tb.netMissing)
	}
	if qe.skip != "" {
		return
	}
	qe.netBlob = tb.net
	qe.busybox = filepath.Join(deps, "busybox", "busybox")
	if !regular(qe.busybox) {
		qe.skip = fmt.Sprintf("no static busybox at %s: make deps provides it", qe.busybox)
		return
	}
	dir := filepath.Join(tb.dir, "qemu-engine")
	build := exec.Command("bash", "../../test/libkrun-qemu/build.sh", dir)
	build.Env = append(os.Environ(), "CFLAGS=-Werror", "BOXLITE_DEPS="+deps)
	if out, err := build.CombinedOutput(); err != nil {
		qe.err = fmt.Errorf("build.sh: %v\n%s", err, out)
		return
	}
	qe.engine = filepath.Join(dir, "libkrun.so.1")
	qe.agent = filepath.Join(tb.dir, "bin", "boxlite-agent")
	ab := exec.Command("go", "build", "-o", qe.agent, "github.com/boxlite/boxlite-shim/cmd/boxlite-agent")
	ab.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := ab.CombinedOutput(); err != nil {
		qe.err = fmt.Errorf("building boxlite-agent: %v\n%s", err, out)
	}
}

func lookPath(name string) string { p, _ := exec.LookPath(name); return p }

func executable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// newQEMUEnv is a sandbox for the engine: the guest root holds the agent
// where runtime/sandbox puts it, and the workload is the agent, as there,
// announcing readiness on the ready port (a listen=false vsock port).
func newQEMUEnv(t *testing.T, variant kernel.Name) *env {
	t.Helper()
	needQEMU(t)
	base, err := os.MkdirTemp("", "vmmq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	e := &env{base: base, root: filepath.Join(base, "root"), state: filepath.Join(base, "state")}
	for _, d := range []string{"proc", "sys", "dev", "tmp", "etc", ".boxlite"} {
		if err := os.MkdirAll(filepath.Join(e.root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, qe.agent, filepath.Join(e.root, guestAgent), 0o755)
	blob := tb.lean
	if variant == kernel.Net {
		blob = qe.netBlob
	}
	e.cfg = Config{
		ID:           "sbq-" + strings.ReplaceAll(t.Name(), "/", "-"),
		JailDir:      base,
		StateDir:     e.state,
		RootDir:      e.root,
		Kernel:       kernel.Source{Name: variant, Path: blob},
		LibkrunPath:  qe.engine,
		VMMBinary:    tb.vmm,
		CPUs:         2,
		MemoryMiB:    512,
		AgentPort:    1024,
		ReadyPort:    1025,
		Workload:     []string{guestAgent, "-vsock-port", "1024", "-ready-port", "1025"},
		Env:          []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		NewNetNS:     true,
		ReadyTimeout: 90 * time.Second, // software emulation, on a shared machine
	}
	e.mounts = mountsUnder(base)
	return e
}

func dialGuest(t *testing.T, v *VMM) *agent.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := agent.DialWith(ctx, v.AgentSocket(), v.DialAgent)
	if err != nil {
		t.Fatalf("connecting to the guest agent: %v%s", err, v.logTails())
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Each kernel variant boots, from the bytes of the staged libkrunfw.so.5,
// into a guest where the real agent serves over vsock; the agent's end is
// the VMM's end, and nothing is left behind.
func TestQEMUBootsEachKernel(t *testing.T) {
	needQEMU(t)
	for _, tc := range []struct {
		variant kernel.Name
		release string
		// The net kernel has no TSI patch: without a net device it would
		// pass libkrun's "tsi_hijack" to init's argv, which the agent
		// refuses as an argument it does not own. So it gets a virtio-net
		// device (a TAP QEMU makes in the VMM's fresh network namespace),
		// as pods do, and then libkrun adds no tsi_hijack.
		net bool
	}{
		{kernel.Lean, "6.12.91", false},
		{kernel.Net, "6.12.107-boxlite-net", true},
	} {
		t.Run(string(tc.variant), func(t *testing.T) {
			e := newQEMUEnv(t, tc.variant)
			if tc.net {
				mac, _ := net.ParseMAC("02:42:ac:11:00:02")
				e.cfg.Net = &Net{Tap: "tap0", MAC: mac}
			}
			start := time.Now()
			v := e.start(t)
			c := dialGuest(t, v)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			info, err := c.Info(ctx)
			if err != nil {
				t.Fatalf("Info: %v", err)
			}
			t.Logf("%s: VMM start -> agent ready (Info answered) in %s under TCG", tc.variant, time.Since(start).Round(time.Millisecond))
			if info.Environment != "vm" || info.OnHost {
				t.Errorf("environment %q on_host=%v, want a VM", info.Environment, info.OnHost)
			}
			if info.KernelRelease != tc.release {
				t.Errorf("kernel release %q, want %q", info.KernelRelease, tc.release)
			}
			if !slices.Contains(info.CgroupControllers, "memory") {
				t.Errorf("cgroup controllers %v lack memory", info.CgroupControllers)
			}
			checkTimingLine(t, v)

			// The variant is the staged library's: the VMM has it mapped,
			// and the engine's QEMU, virtiofsd and vhost-device-vsock run
			// in the VMM's process group.
			// The engine's init is out of the guest root once it runs.
			if _, err := os.Lstat(filepath.Join(e.root, "init.krun")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("init.krun still in the guest root while the guest runs (lstat: %v)", err)
			}
			maps, _ := os.ReadFile(fmt.Sprintf("/proc/%d/maps", v.Pid()))
			if real, _ := filepath.EvalSymlinks(e.cfg.Kernel.Path); !strings.Contains(string(maps), real) {
				t.Errorf("%s not mapped in the VMM", real)
			}
			procs := groupComms(v.Pid())
			for _, want := range []string{"qemu-system-x86", "virtiofsd", "vhost-device-vs", "krun-launcher"} {
				if !slices.Contains(procs, want) {
					t.Errorf("no %s in the VMM's process group: %v", want, procs)
				}
			}
			if tc.net {
				if !strings.Contains(readCmdline(t, v), "virtio_mmio.device=") || strings.Contains(readCmdline(t, v), "tsi_hijack") {
					t.Errorf("net device: kernel command line %q", readCmdline(t, v))
				}
			} else {
				lateMount(t, v, c)
			}

			if err := c.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			if ex := waitDone(t, v); ex.Status != 0 || ex.Signaled {
				t.Errorf("VMM exit %+v, want the agent's 0", ex)
			}
			calls := readCalls(t, filepath.Join(v.StateDir(), "krun-calls.jsonl"))
			if end := find(t, calls, "workload_exit"); end["status"] != 0.0 || end["reported"] != true {
				t.Errorf("workload_exit %v: want status 0 reported by init", end)
			}
			if err := v.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			e.assertClean(t)
		})
	}
}

// lateMount: what the shim mounts under the guest root in the VMM's mount
// namespace after the boot (a container's root filesystem) reaches the
// guest through virtiofsd, which serves the root of that namespace.
func lateMount(t *testing.T, v *VMM, c *agent.Client) {
	t.Helper()
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, qe.busybox, filepath.Join(src, "bin", "busybox"), 0o755)
	if err := os.WriteFile(filepath.Join(src, "marker"), []byte("mounted after the boot\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ns, err := share.Open(v.Pid(), "/root")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := ns.Bind(src, "late", share.BindOptions{}); err != nil {
		t.Fatalf("binding a directory under the guest root: %v", err)
	}
	defer func() {
		if err := ns.Remove("late"); err != nil {
			t.Errorf("removing the late mount: %v", err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	spec := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs"},
		Process: &specs.Process{Args: []string{"/bin/busybox", "cat", "/marker"}, Env: []string{"PATH=/bin"}, Cwd: "/"},
		Mounts:  []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
		Linux:   &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}}},
	}
	var out, errOut strings.Builder
	var mu sync.Mutex
	_, att, err := c.Create(ctx, "late", spec, "/late", agent.IO{Stdout: lockedWriter{&mu, &out}, Stderr: lockedWriter{&mu, &errOut}})
	if err != nil {
		t.Fatalf("creating a container on the late mount: %v", err)
	}
	defer c.Delete(ctx, "late", true)
	if _, err := c.Start(ctx, "late"); err != nil {
		t.Fatalf("start: %v", err)
	}
	st, err := c.Wait(ctx, "late", "")
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	att.Wait()
	mu.Lock()
	defer mu.Unlock()
	if st.Status != 0 || out.String() != "mounted after the boot\n" {
		t.Errorf("the guest's view of a mount made after the boot: status %d, stdout %q, stderr %q", st.Status, out.String(), errOut.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// groupComms lists the command names in process group pgid.
func groupComms(pgid int) []string {
	var out []string
	for _, pid := range reaper.GroupMembers(pgid) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err == nil {
			out = append(out, strings.TrimSpace(string(b)))
		}
	}
	return out
}

// checkTimingLine: the engine logged its timing line on the VMM's log
// (make bench reads it), with QEMU spawned, the kernel entered and init
// started in that order after krun_start_enter.
func checkTimingLine(t *testing.T, v *VMM) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(v.StateDir(), VMMLogName))
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "libkrun-qemu: timing "
	var line string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			line = l
		}
	}
	got := map[string]float64{}
	for _, f := range strings.Fields(strings.TrimPrefix(line, prefix)) {
		k, val, _ := strings.Cut(f, "=")
		if x, err := strconv.ParseFloat(val, 64); err == nil {
			got[k] = x
		}
	}
	q, qok := got["qemu_exec_ms"]
	k, kok := got["kernel_entry_ms"]
	i, iok := got["init_ms"]
	if !qok || !kok || !iok || !(0 <= q && q < k && k < i) {
		t.Errorf("the engine's timing line %q: want 0 <= qemu_exec_ms < kernel_entry_ms < init_ms; vmm.log:\n%s", line, b)
	} else {
		t.Logf("engine timing after krun_start_enter: QEMU spawned %.1f ms, kernel entered %.1f ms, init %.1f ms", q, k, i)
	}
}

func readCmdline(t *testing.T, v *VMM) string {
	t.Helper()
	c, _ := find(t, readCalls(t, filepath.Join(v.StateDir(), "krun-calls.jsonl")), "krun_start_enter")["cmdline"].(string)
	return c
}

// The engine is told from the host double by its second marker; both are
// test doubles, which the VMM refuses unless named.
func TestIsTestEngine(t *testing.T) {
	needQEMU(t)
	for path, want := range map[string][2]bool{
		qe.engine: {true, true},
		tb.double: {true, false},
		tb.lean:   {false, false},
	} {
		if d, e := IsTestDouble(path), IsTestEngine(path); d != want[0] || e != want[1] {
			t.Errorf("%s: IsTestDouble %v, IsTestEngine %v; want %v", path, d, e, want)
		}
	}
}

// The engine's call log has the host double's calls, in the same order, with
// (at least) the same fields and the same configuration.
func TestQEMUCallLogMatchesTheDouble(t *testing.T) {
	needQEMU(t)
	run := func(e *env) []call {
		v := e.start(t)
		calls := readCalls(t, filepath.Join(v.StateDir(), "krun-calls.jsonl"))
		if err := v.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		e.assertClean(t)
		return calls
	}
	q := newQEMUEnv(t, kernel.Lean)
	d := newEnv(t)
	// The same configuration but the workload, which runs on the host
	// under the double.
	d.cfg.CPUs, d.cfg.MemoryMiB, d.cfg.Env, d.cfg.Workdir = q.cfg.CPUs, q.cfg.MemoryMiB, q.cfg.Env, "/tmp"
	q.cfg.Workdir = "/tmp"
	if err := os.MkdirAll(filepath.Join(d.root, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	dc, qc := run(d), run(q)
	names := func(cs []call) (n []string) {
		for _, c := range cs {
			n = append(n, fmt.Sprint(c["call"]))
		}
		return n
	}
	if dn, qn := names(dc), names(qc); !slices.Equal(dn, qn) {
		t.Fatalf("calls differ:\ndouble %v\nengine %v", dn, qn)
	}
	// The host path of the staged kernel (another state directory) and the
	// workload differ; the double's workload pid is the engine's qemu_pid,
	// and what the double's stand-in for the guest's init ran (its pid, the
	// workload's argv) is in the guest under the engine.
	differ := map[string]bool{"path": true, "exec_path": true, "argv": true}
	for i, dcall := range dc {
		for k, dv := range dcall {
			qv, ok := qc[i][k]
			switch {
			case k == "workload_pid", k == "init_pid", k == "workload_argv":
			case !ok:
				t.Errorf("%s: the engine logs no %q (double: %v)", dcall["call"], k, dv)
			case !differ[k] && fmt.Sprint(qv) != fmt.Sprint(dv):
				t.Errorf("%s %s: engine %v, double %v", dcall["call"], k, qv, dv)
			}
		}
	}
	want := `reboot=k panic=-1 panic_print=0 nomodule console=hvc0 rootfstype=virtiofs rw quiet no-kvmapf init=/init.krun  ` +
		`KRUN_INIT=/.boxlite/boxlite-agent KRUN_WORKDIR=/tmp   "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" ` +
		`virtio_mmio.device=512@0xfeb00000:5 virtio_mmio.device=512@0xfeb00200:6 virtio_mmio.device=512@0xfeb00400:7 ` +
		`virtio_mmio.device=512@0xfeb00800:9 virtio_mmio.device=512@0xfeb00a00:10 tsi_hijack reboot=t init_on_alloc=1  -- "-vsock-port" "1024" "-ready-port" "1025"`
	if got := find(t, qc, "krun_start_enter")["cmdline"]; got != want {
		t.Errorf("kernel command line\n got %q\nwant %q", got, want)
	}
}

// Failures come out as they do with libkrun: a blob that is not a kernel
// ends the VM (a reset, exit 0) before the agent is ready, a failing krun_*
// call ends boxlite-vmm with 5, a command line libkrun cannot build aborts
// it, and a workload that cannot be executed is init's 127, reported as the
// VMM's status.
func TestQEMUStartFailures(t *testing.T) {
	needQEMU(t)
	notKernel := filepath.Join(tb.dir, "notkernel", KernelSOName)
	if err := os.MkdirAll(filepath.Dir(notKernel), 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(tb.dir, "notkernel.c")
	if err := os.WriteFile(src, []byte(standinKrunfw), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cc", "-shared", "-fPIC", "-Wl,-soname,libkrunfw.so.5", "-o", notKernel, src).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, tc := range []struct {
		name  string
		setup func(e *env)
		want  []string
		// log, when set, is in the "panic" of krun_start_enter's line in
		// the call log (KRUN_DOUBLE_LOG, outside the state directory).
		log string
	}{
		{
			name:  "not a kernel",
			setup: func(e *env) { e.cfg.Kernel.Path = notKernel; e.cfg.ReadyTimeout = 60 * time.Second },
			want:  []string{"exited before the guest was ready", "exit status 0", "the guest ended before its init started", "guest console", "console.log: (empty"},
		},
		{
			name:  "a krun call fails",
			setup: func(e *env) { e.cfg.extraEnv = []string{"KRUN_DOUBLE_FAIL=krun_set_vm_config"} },
			want:  []string{"boxlite-vmm: krun_set_vm_config: Invalid argument", "exit status 5"},
		},
		{
			// UTF-8 passes krun_set_exec, but libkrun's command line takes
			// printable ASCII only, and it unwraps that insert: a panic
			// out of krun_start_enter, which aborts (SIGABRT, which the Go
			// runtime of boxlite-vmm turns into exit status 2 after a
			// goroutine dump, so the reason is looked for in the call log).
			name: "an environment value libkrun's command line refuses",
			setup: func(e *env) {
				e.cfg.Env = append(e.cfg.Env, "GREETING=grüß")
				e.cfg.extraEnv = []string{"KRUN_DOUBLE_LOG=" + filepath.Join(e.base, "calls.jsonl")}
			},
			want: []string{"exit status 2"},
			log:  "called `Result::unwrap()` on an `Err` value: InvalidAscii",
		},
		{
			name:  "workload not found",
			setup: func(e *env) { e.cfg.Workload = []string{"/nonexistent"} },
			want:  []string{"exit status 127", "Couldn't execute '/nonexistent' inside the vm"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newQEMUEnv(t, kernel.Lean)
			tc.setup(e)
			start := time.Now()
			v, err := Start(context.Background(), e.cfg, reaper.Default())
			if err == nil {
				v.Stop(context.Background())
				t.Fatal("Start succeeded")
			}
			if d := time.Since(start); d >= e.cfg.ReadyTimeout {
				t.Errorf("failed only after %s (the ready timeout)", d)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%.2000s", w, err)
				}
			}
			if tc.log != "" {
				if p, _ := find(t, readCalls(t, filepath.Join(e.base, "calls.jsonl")), "krun_start_enter")["panic"].(string); !strings.Contains(p, tc.log) {
					t.Errorf("krun_start_enter's panic %q, want %q", p, tc.log)
				}
			}
			e.assertClean(t)
		})
	}
}

// What boxlite-vmm does not ask for, driven directly (testdata/krundrive.c,
// no jail): a guest's connection to a listen=false port reaches the host
// process listening at the port's path, as libkrun connects there when the
// guest connects; a listen=true port whose path exists is refused with
// -EEXIST at the call; one whose socket cannot be bound is only warned
// about; and a bound one's socket file is left when the VM ends, as
// libkrun never unlinks it.
func TestQEMUGuestToHostPort(t *testing.T) {
	needQEMU(t)
	base, err := os.MkdirTemp("", "vmmq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	drive, hello := filepath.Join(base, "krundrive"), filepath.Join(base, "root", "vsockhello")
	for _, d := range []string{"root", "state", "krunfw"} {
		if err := os.Mkdir(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range [][]string{
		{"-O2", "-Wall", "-Werror", "-o", drive, "testdata/krundrive.c", "-ldl"},
		{"-O2", "-Wall", "-Werror", "-static", "-o", hello, "testdata/vsockhello.c"},
	} {
		if out, err := exec.Command("cc", b...).CombinedOutput(); err != nil {
			t.Fatalf("cc %v: %v\n%s", b, err, out)
		}
	}
	if err := os.Symlink(tb.lean, filepath.Join(base, "krunfw", KernelSOName)); err != nil {
		t.Fatal(err)
	}
	exists := filepath.Join(base, "exists")
	if err := os.WriteFile(exists, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	hostSock := filepath.Join(base, "host.sock")
	l, err := net.Listen("unix", hostSock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		line := make([]byte, 5)
		n, _ := c.Read(line)
		got <- string(line[:n])
		_, _ = c.Write([]byte("pong\n"))
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	console := filepath.Join(base, "state", "console.log")
	cmd := exec.CommandContext(ctx, drive, qe.engine, filepath.Join(base, "root"), console,
		"5000:"+hostSock+":0", "1024:"+exists+":1", "1025:"+filepath.Join(base, "nodir", "x.sock")+":1",
		"1026:"+filepath.Join(base, "kept.sock")+":1", "--", "/vsockhello", "5000")
	cmd.Dir = filepath.Join(base, "state")
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LD_LIBRARY_PATH=" + filepath.Join(base, "krunfw")}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	con, _ := os.ReadFile(console)
	if err != nil {
		t.Fatalf("krundrive: %v\n%s\nconsole:\n%s", err, out, con)
	}
	for _, want := range []string{"krun_add_vsock_port2 5000:" + hostSock + ":0 0\n", "krun_add_vsock_port2 1024:" + exists + ":1 -17\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("krundrive's output lacks %q:\n%s", want, out)
		}
	}
	if want := "WARN: failed to create listening proxy at " + filepath.Join(base, "nodir", "x.sock"); !strings.Contains(string(out), want) {
		t.Errorf("krundrive's output lacks %q:\n%s", want, out)
	}
	if fi, err := os.Lstat(filepath.Join(base, "kept.sock")); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("the listening port's socket was not left behind: %v %v", fi, err)
	}
	select {
	case s := <-got:
		if s != "ping\n" {
			t.Errorf("the host listener got %q from the guest", s)
		}
	default:
		t.Error("no guest connection reached the host listener")
	}
	if !strings.Contains(string(con), "vsockhello: got pong") {
		t.Errorf("console:\n%s", con)
	}
	for _, p := range []string{filepath.Join(base, "state", "qemu"), filepath.Join(base, "root", "init.krun")} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind (lstat: %v)", p, err)
		}
	}
	if kids := children(); len(kids) > 0 {
		t.Errorf("child processes left: %v", kids)
	}
}
