package vmm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/boxlite/boxlite-shim/kernel"
	"github.com/boxlite/boxlite-shim/reaper"
	"github.com/boxlite/boxlite-shim/test/netnstest"
)

// The double's call log shows exactly the configuration the VMM was given,
// and that libkrunfw came from the staged file.
func TestCallLogShowsConfiguration(t *testing.T) {
	e := newEnv(t)
	v := e.start(t)

	a, hello := dialAgent(t, v.AgentSocket())
	// A child of PID 1 (the double's stand-in for libkrun's init) in a
	// fresh PID namespace, not PID 1 itself; cwd = workdir, the double says
	// so, and the vsock port list matches the one fd it passed.
	if strings.HasPrefix(hello, "ok pid=1 ") || !strings.Contains(hello, " ppid=1 ") || !strings.Contains(hello, " cwd=/work double=1 ports=1024") {
		t.Errorf("greeting %q: want a pid other than 1, ppid=1, cwd=/work, double=1, ports=1024", hello)
	}
	// The environment is what a guest kernel gives init from libkrun's
	// command line: HOME, TERM, libkrun's KRUN_* and the configured ones.
	for k, want := range map[string]string{"FOO": "bar baz", "HOME": "/", "TERM": "linux", "KRUN_INIT": "/vmmworkload", "KRUN_WORKDIR": "/work"} {
		if got := a.ask(t, "env "+k); got != k+"="+want {
			t.Errorf("workload env %s: %q, want %q", k, got, want)
		}
	}
	if got := a.ask(t, "env LD_LIBRARY_PATH"); got != "LD_LIBRARY_PATH=" {
		t.Errorf("the VMM's environment leaked into the workload: %q", got)
	}

	all := readCalls(t, filepath.Join(v.StateDir(), "krun-calls.jsonl"))
	var calls []call // libkrun's API calls (the double also logs what it does)
	for _, c := range all {
		if name := fmt.Sprint(c["call"]); strings.HasPrefix(name, "krun_") || name == "krunfw_load" {
			calls = append(calls, c)
		}
	}
	if calls[0]["call"] != "krun_set_log_level" || calls[len(calls)-1]["call"] != "krun_start_enter" {
		t.Errorf("call order: first %v, last %v", calls[0]["call"], calls[len(calls)-1]["call"])
	}
	for _, c := range calls {
		if ret, ok := c["ret"].(float64); !ok || ret < 0 {
			t.Errorf("call failed or unrecorded ret: %v", c)
		}
	}
	// The guest said it serves through the ready port (listen=false).
	if vc := find(t, all, "vsock_connect"); vc["port"] != 1025.0 || vc["connected"] != true {
		t.Errorf("the workload's ready connection: %v", vc)
	}
	check := func(c call, key string, want any) {
		t.Helper()
		if got := fmt.Sprint(c[key]); got != fmt.Sprint(want) {
			t.Errorf("%s %s = %s, want %v", c["call"], key, got, want)
		}
	}
	vc := find(t, calls, "krun_set_vm_config")
	check(vc, "vcpus", 2)
	check(vc, "ram_mib", 512)
	// Paths are the jail's: the VMM has pivoted into JailDir.
	check(find(t, calls, "krun_set_root"), "root", "/root")
	check(find(t, calls, "krun_set_workdir"), "workdir", "/work")
	ex := find(t, calls, "krun_set_exec")
	check(ex, "exec_path", "/vmmworkload")
	check(ex, "argv", []any{"serve", "1025"})
	check(ex, "envp", []any{"FOO=bar baz"})
	var ports []string
	for _, c := range calls {
		if c["call"] == "krun_add_vsock_port2" {
			ports = append(ports, fmt.Sprintf("%v:%v:%v", c["port"], c["filepath"], c["listen"]))
		}
	}
	if got, want := strings.Join(ports, " "), "1024:/state/"+AgentSocketName+":true 1025:/state/"+readySocketName+":false"; got != want {
		t.Errorf("vsock ports %s, want %s", got, want)
	}
	check(find(t, calls, "krun_set_console_output"), "filepath", "/state/"+consolePipeName)
	fw := find(t, calls, "krunfw_load")
	check(fw, "path", filepath.Join(e.state, KernelDirName, KernelSOName))
	real, err := filepath.EvalSymlinks(tb.lean)
	if err != nil {
		t.Fatal(err)
	}
	check(fw, "realpath", real)
	check(fw, "version", 5)
	if size, _ := fw["size"].(float64); size < 1<<20 {
		t.Errorf("krunfw_get_kernel size %v: not a kernel", fw["size"])
	}
	if got, _ := os.Readlink(v.KernelLibrary()); got != tb.lean {
		t.Errorf("staged kernel links to %q, want %q", got, tb.lean)
	}

	// The workload's exit ends the VMM with its status (as libkrun does);
	// it is the VMM's status, not a container's.
	if _, err := fmt.Fprintln(a, "exit 7"); err != nil {
		t.Fatal(err)
	}
	if ex := waitDone(t, v); ex.Status != 7 || ex.Signaled {
		t.Errorf("VMM exit %+v, want status 7", ex)
	}
	console, _ := os.ReadFile(v.ConsoleLog())
	if !strings.Contains(string(console), "vmmworkload: serve pid=") || !strings.Contains(string(console), "vmmworkload: exit 7") {
		t.Errorf("console log %q lacks the workload's output", console)
	}
	vmmLog, _ := os.ReadFile(filepath.Join(v.StateDir(), VMMLogName))
	if !strings.Contains(string(vmmLog), "WARNING") || !strings.Contains(string(vmmLog), "test double") {
		t.Errorf("vmm.log %q lacks the test-double warning", vmmLog)
	}
	exit := find(t, readCalls(t, filepath.Join(v.StateDir(), "krun-calls.jsonl")), "workload_exit")
	check(exit, "status", 7)
	if err := v.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.assertClean(t)
}

// The chosen kernel variant is what the VMM process has mapped.
func TestKernelVariantIsMapped(t *testing.T) {
	need(t)
	if !tb.netReal {
		t.Logf("the real net kernel %s is missing (run `make deps`): a stand-in blob %s plays the net variant", tb.netMissing, tb.net)
	} else {
		t.Logf("net variant: the real net kernel %s", tb.net)
	}
	blobs := map[kernel.Name]string{kernel.Lean: tb.lean, kernel.Net: tb.net}
	for _, name := range []kernel.Name{kernel.Lean, kernel.Net} {
		t.Run(string(name), func(t *testing.T) {
			e := newEnv(t)
			e.cfg.Kernel = kernel.Source{Name: name, Path: blobs[name]}
			v := e.start(t)
			maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", v.Pid()))
			if err != nil {
				t.Fatal(err)
			}
			for n, blob := range blobs {
				real, err := filepath.EvalSymlinks(blob)
				if err != nil {
					t.Fatal(err)
				}
				if mapped := strings.Contains(string(maps), real); mapped != (n == name) {
					t.Errorf("variant %s: %s mapped=%v in /proc/%d/maps", name, real, mapped, v.Pid())
				}
			}
			if err := v.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			e.assertClean(t)
		})
	}
}

func TestStartFailures(t *testing.T) {
	need(t)
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, e *env)
		want  []string
		kind  func(error) bool
	}{
		{
			name:  "libkrun absent",
			setup: func(t *testing.T, e *env) { e.cfg.LibkrunPath = filepath.Join(e.base, "nowhere", "libkrun.so.1") },
			want:  []string{"libkrun is not available", "install libkrun", "exit status 3"},
			kind:  errdefs.IsFailedPrecondition,
		},
		{
			name:  "libkrun call fails",
			setup: func(t *testing.T, e *env) { e.cfg.extraEnv = []string{"KRUN_DOUBLE_FAIL=krun_set_root"} },
			// Before krun_start_enter: the error says the console is empty.
			want: []string{"boxlite-vmm: krun_set_root: Invalid argument", "exit status 5", "console.log: (empty"},
		},
		{
			name:  "kernel blob missing",
			setup: func(t *testing.T, e *env) { e.cfg.Kernel.Path = filepath.Join(e.base, "nowhere", KernelSOName) },
			want:  []string{"kernel library", KernelSOName, "exit status 6"},
			kind:  errdefs.IsNotFound,
		},
		{
			name: "test double found through the loader path",
			setup: func(t *testing.T, e *env) {
				e.cfg.LibkrunPath = ""
				t.Setenv("LD_LIBRARY_PATH", filepath.Dir(tb.double))
			},
			want: []string{"refusing libkrun.so.1", "test double", "exit status 4"},
			kind: errdefs.IsFailedPrecondition,
		},
		{
			name:  "workload exits at once",
			setup: func(t *testing.T, e *env) { e.cfg.Workload = []string{"/vmmworkload", "exit-now", "9"} },
			want:  []string{"exited before the guest was ready", "exit status 9", "vmmworkload: exit-now"},
		},
		{
			name:  "workload not found",
			setup: func(t *testing.T, e *env) { e.cfg.Workload = []string{"/nonexistent"} },
			want:  []string{"exit status 127", "/nonexistent: errno 2"},
		},
		{
			name: "agent never listens",
			setup: func(t *testing.T, e *env) {
				e.cfg.Workload = []string{"/vmmworkload", "close-and-wait"}
				e.cfg.ReadyTimeout = time.Second
			},
			want: []string{"did not say it was ready within 1s"},
			kind: func(err error) bool { return errors.Is(err, context.DeadlineExceeded) },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			tc.setup(t, e)
			v, err := Start(context.Background(), e.cfg, reaper.Default())
			if err == nil {
				v.Stop(context.Background())
				t.Fatal("Start succeeded")
			}
			t.Logf("error: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q", w)
				}
			}
			if tc.kind != nil && !tc.kind(err) {
				t.Errorf("error has the wrong errdefs class")
			}
			e.assertClean(t)
		})
	}
}

func TestStartCancelled(t *testing.T) {
	e := newEnv(t)
	e.cfg.Workload = []string{"/vmmworkload", "close-and-wait"}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := Start(ctx, e.cfg, reaper.Default()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Start: %v, want the context's error", err)
	}
	e.assertClean(t)
}

func TestStartRefusesBadConfig(t *testing.T) {
	e := newEnv(t)
	e.cfg.CPUs = 0
	if _, err := Start(context.Background(), e.cfg, reaper.Default()); !errdefs.IsInvalidArgument(err) {
		t.Errorf("0 CPUs: %v", err)
	}
	e.cfg.CPUs = 1
	e.cfg.StateDir = filepath.Join(e.base, strings.Repeat("x", 100))
	if _, err := Start(context.Background(), e.cfg, reaper.Default()); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "too long") {
		t.Errorf("long state dir: %v", err)
	}
	e.cfg.StateDir = e.state
	if err := os.Mkdir(e.state, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Start(context.Background(), e.cfg, reaper.Default()); !errdefs.IsAlreadyExists(err) {
		t.Errorf("existing state dir: %v", err)
	}
	if _, err := os.Stat(e.state); err != nil {
		t.Errorf("Start removed a state directory it did not create: %v", err)
	}
	os.Remove(e.state)
	e.assertClean(t)
}

func TestStop(t *testing.T) {
	e := newEnv(t)
	v := e.start(t)
	group := reaper.GroupMembers(v.Pid()) // the VMM, the double's guest helper, the workload
	if len(group) < 3 {
		t.Fatalf("the VMM's process group is %v: want the VMM, the guest helper and the workload", group)
	}
	if err := v.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-v.Done():
	default:
		t.Fatal("Stop returned before the VMM was reaped")
	}
	if ex, _ := v.Exit(); !ex.Signaled || ex.Status != 128+9 {
		t.Errorf("exit %+v, want killed by SIGKILL", ex)
	}
	for _, pid := range group {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			t.Errorf("process %d still exists after Stop", pid)
		}
	}
	for i := 0; i < 2; i++ {
		if err := v.Stop(context.Background()); err != nil {
			t.Errorf("Stop again: %v", err)
		}
	}
	e.assertClean(t)
}

func TestStopAfterWorkloadExit(t *testing.T) {
	e := newEnv(t)
	v := e.start(t)
	a, _ := dialAgent(t, v.AgentSocket())
	fmt.Fprintln(a, "exit 0")
	if ex := waitDone(t, v); ex.Status != 0 || ex.Signaled {
		t.Errorf("exit %+v", ex)
	}
	if err := v.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.assertClean(t)
}

// Without -krunfw and with no libkrunfw.so.5 on the library path, the double
// fails krun_create_ctx with ENOENT, as libkrun does.
func TestDoubleNeedsKrunfwOnLibraryPath(t *testing.T) {
	e := newEnv(t)
	empty := filepath.Join(e.base, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(e.base, "calls.jsonl")
	cmd := exec.Command(tb.vmm, "-jail", e.base, "-libkrun", tb.double, "-allow-test-double", "-root", "/root", "--", "/vmmworkload")
	cmd.Dir = e.base
	cmd.Env = []string{"LD_LIBRARY_PATH=" + empty, "KRUN_DOUBLE_LOG=" + logPath}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID}
	out, err := cmd.CombinedOutput()
	fw := find(t, readCalls(t, logPath), "krunfw_load")
	if fw["ret"] == 0.0 {
		t.Skipf("a libkrunfw.so.5 is installed on this system (%v): cannot test its absence", fw["realpath"])
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 5 || !strings.Contains(string(out), "krun_create_ctx: No such file or directory") {
		t.Errorf("boxlite-vmm: %v\n%s", err, out)
	}
	if fw["ret"] != -2.0 || !strings.Contains(fmt.Sprint(fw["error"]), "libkrunfw.so.5") {
		t.Errorf("krunfw_load logged %v", fw)
	}
}

func TestIsTestDouble(t *testing.T) {
	need(t)
	for path, want := range map[string]bool{
		tb.double:              true,
		tb.lean:                false,
		tb.vmm:                 false,
		"libkrun.so.1":         false,
		"/nonexistent/lib.so1": false,
	} {
		if got := IsTestDouble(path); got != want {
			t.Errorf("IsTestDouble(%s) = %v", path, got)
		}
	}
}

// With a network device, the VMM runs in the given network namespace and
// hands libkrun the TAP by name and the guest's MAC; the double's "guest" then
// has an eth0 of its own with that MAC, in a namespace that is not the VMM's.
// A failing krun_add_net_tap fails Start, naming it, and leaves nothing.
func TestNetworkDevice(t *testing.T) {
	mac, _ := net.ParseMAC("02:42:0a:57:4d:09")
	setup := func(t *testing.T) *env {
		e := newEnv(t)
		pod := netnstest.New(t)
		// Owned by root, as podnet makes it: the jailed VMM attaches to it
		// without CAP_NET_ADMIN.
		netnstest.Sh(t, pod, "ip tuntap add dev boxlite0 mode tap user 0 && ip link set boxlite0 up")
		e.cfg.NetNS = pod
		e.cfg.Net = &Net{Tap: "boxlite0", MAC: mac}
		return e
	}
	t.Run("ok", func(t *testing.T) {
		e := setup(t)
		v := e.start(t)
		a, _ := dialAgent(t, v.AgentSocket())
		if got := a.ask(t, "links"); !strings.Contains(got, "eth0="+mac.String()) {
			t.Errorf("the workload's interfaces are %q, want eth0=%s", got, mac)
		}
		calls := readCalls(t, filepath.Join(v.StateDir(), "krun-calls.jsonl"))
		nt := find(t, calls, "krun_add_net_tap")
		for k, want := range map[string]any{"tap_name": "boxlite0", "mac": mac.String(), "features": 0, "flags": 0, "ret": 0} {
			if got := fmt.Sprint(nt[k]); got != fmt.Sprint(want) {
				t.Errorf("krun_add_net_tap %s = %s, want %v", k, got, want)
			}
		}
		if nd := find(t, calls, "net_device"); nd["guest_eth0"] != true {
			t.Errorf("net_device %v", nd)
		}
		vmmNS, _ := os.Stat(fmt.Sprintf("/proc/%d/ns/net", v.Pid()))
		podNS, _ := os.Stat(e.cfg.NetNS)
		if vmmNS == nil || podNS == nil || !os.SameFile(vmmNS, podNS) {
			t.Errorf("the VMM is not in the pod's network namespace %s", e.cfg.NetNS)
		}
	})
	t.Run("call fails", func(t *testing.T) {
		e := setup(t)
		e.cfg.extraEnv = []string{"KRUN_DOUBLE_FAIL=krun_add_net_tap"}
		_, err := Start(context.Background(), e.cfg, reaper.Default())
		if err == nil || !strings.Contains(err.Error(), "krun_add_net_tap: Invalid argument") {
			t.Fatalf("Start: %v", err)
		}
		e.assertClean(t)
	})
	t.Run("bad device", func(t *testing.T) {
		e := newEnv(t)
		e.cfg.Net = &Net{Tap: "boxlite0", MAC: net.HardwareAddr{1, 2, 3}}
		if _, err := Start(context.Background(), e.cfg, reaper.Default()); !errdefs.IsInvalidArgument(err) {
			t.Fatalf("Start with a 3-byte MAC: %v", err)
		}
		e.assertClean(t)
	})
}

// TestJail: the VMM (libkrun's process) is confined. Its root is the jail
// directory, with only the guest root, its state, /proc of its own PID
// namespace (read-only) and /dev inside; it is in mount, PID, IPC and UTS
// namespaces of its own; it keeps only the capabilities libkrun's virtio-fs
// uses, with no_new_privs. Before the jail, /proc/<vmm>/root was the host's
// root and the VMM had every capability (this test failed there).
func TestJail(t *testing.T) {
	e := newEnv(t)
	v := e.start(t)
	root := fmt.Sprintf("/proc/%d/root", v.Pid())
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ent := range ents {
		names = append(names, ent.Name())
	}
	if got := strings.Join(names, " "); got != "dev proc root state" {
		t.Errorf("the VMM's root holds %q, want only the jail's dev proc root state", got)
	}
	for _, host := range []string{"usr", "etc", strings.TrimPrefix(tb.lean, "/"), strings.TrimPrefix(depsDir(), "/")} {
		if _, err := os.Lstat(filepath.Join(root, host)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the host's /%s is reachable from the VMM: %v", host, err)
		}
	}
	for _, ns := range []string{"mnt", "pid", "ipc", "uts"} {
		mine, _ := os.Readlink("/proc/self/ns/" + ns)
		its, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", v.Pid(), ns))
		if err != nil || its == mine {
			t.Errorf("the VMM's %s namespace is the host's (%s, %v)", ns, its, err)
		}
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", v.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%016x", jailCaps)
	for _, field := range []string{"CapPrm", "CapEff", "CapBnd"} {
		if got := statusField(string(status), field); got != want {
			t.Errorf("%s = %s, want %s (chown, dac_override, fowner, fsetid, setgid, setuid, setfcap)", field, got, want)
		}
	}
	for field, want := range map[string]string{"CapInh": "0000000000000000", "CapAmb": "0000000000000000", "NoNewPrivs": "1"} {
		if got := statusField(string(status), field); got != want {
			t.Errorf("%s = %s, want %s", field, got, want)
		}
	}
	mounts, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", v.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	for mp, want := range map[string][]string{"/": {"nosuid", "nodev"}, "/root": {"nosuid", "nodev", "shared:"}, "/proc": {"ro", "nosuid", "nodev", "noexec"}} {
		line := mountLine(string(mounts), mp)
		if line == "" {
			t.Errorf("no mount at %s in the jail:\n%s", mp, mounts)
			continue
		}
		for _, w := range want {
			if !strings.Contains(line, w) {
				t.Errorf("jail mount %s lacks %s: %s", mp, w, line)
			}
		}
	}
	// /proc in the jail: the VMM's own PID namespace, read-only, and
	// (subset=pid) without the host's sysrq-trigger or sys/.
	if _, err := os.Stat(filepath.Join(root, "proc", "1")); err != nil {
		t.Errorf("the jail's /proc has no process 1 (the VMM): %v", err)
	}
	if f, err := os.OpenFile(filepath.Join(root, "proc", "sysrq-trigger"), os.O_WRONLY, 0); err == nil {
		f.Close()
		t.Errorf("/proc/sysrq-trigger can be opened for writing in the jail")
	}
}

func statusField(status, name string) string {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// mountLine is the mountinfo line of mount point mp (the last one there).
func mountLine(mountinfo, mp string) string {
	var out string
	for _, line := range strings.Split(mountinfo, "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == mp {
			out = line
		}
	}
	return out
}

// TestConsoleCapped: a guest that writes without end cannot fill the host's
// memory: console.log keeps at most ConsoleLogMax bytes, the part before it
// goes to console.log.1, and older output is dropped. Before the cap, the
// console log grew without bound (this test failed there).
func TestConsoleCapped(t *testing.T) {
	e := newEnv(t)
	e.cfg.ConsoleLogMax = 64 << 10
	v := e.start(t)
	a, _ := dialAgent(t, v.AgentSocket())
	if got := a.ask(t, "spam 1048576"); got != "spammed" {
		t.Fatalf("spam: %q", got)
	}
	// The copy is asynchronous: wait for the tail of the output.
	deadline := time.Now().Add(10 * time.Second)
	var cur, prev os.FileInfo
	for {
		cur, _ = os.Stat(v.ConsoleLog())
		prev, _ = os.Stat(v.ConsoleLog() + ".1")
		if prev != nil && cur != nil && cur.Size() > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if prev == nil || cur == nil {
		t.Fatalf("console.log and console.log.1 after 1 MiB of output: %v, %v", cur, prev)
	}
	for _, fi := range []os.FileInfo{cur, prev} {
		if fi.Size() > e.cfg.ConsoleLogMax {
			t.Errorf("%s is %d bytes, over the cap of %d", fi.Name(), fi.Size(), e.cfg.ConsoleLogMax)
		}
	}
}

// TestOOMScoreAdj: the VMM gets the container spec's oom_score_adj, not the
// shim's (far lower, so that VMs outlived other pods under memory pressure:
// this test failed before).
func TestOOMScoreAdj(t *testing.T) {
	e := newEnv(t)
	adj := 617
	e.cfg.OOMScoreAdj = &adj
	v := e.start(t)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", v.Pid()))
	if err != nil || strings.TrimSpace(string(b)) != "617" {
		t.Errorf("the VMM's oom_score_adj: %q %v, want 617", b, err)
	}
}
