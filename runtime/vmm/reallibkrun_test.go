package vmm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/boxlite/boxlite-shim/kernel"
	"github.com/boxlite/boxlite-shim/reaper"
	"github.com/boxlite/boxlite-shim/runtime/agent"
)

// What changes under real libkrun, and what the double now models of it.

// Every VMM start refuses a libkrun too old for the staged kernels, naming
// the version needed, and accepts 1.18.1 and newer. The double is built as
// each release (its symbols) and installed under the release's file name.
// Before the version check, 1.18.0 and the 1.18.x known only by its
// symbols started, and 1.16.0 failed in krun_create_ctx with "No such
// file" (it loads libkrunfw.so.4): seen failing.
func TestLibkrunVersions(t *testing.T) {
	need(t)
	for _, tc := range []struct {
		name, build, file string
		want              []string // "" = accepted; else the error says all of these
		log               string   // accepted: what vmm.log says of it
	}{
		{name: "1.16.0", build: "11600", file: "libkrun.so.1.16.0", want: []string{
			"boxlite-vmm: unsupported libkrun", "libkrun 1.16.0 (file name libkrun.so.1.16.0; its symbols agree: 1.16.x) is too old: needs >= 1.18.1 for the staged kernel",
			"loads libkrunfw.so.4", "install libkrun 1.18.1 or newer", "exit status 8"}},
		{name: "1.17.3", build: "11703", file: "libkrun.so.1.17.3", want: []string{
			"libkrun 1.17.3 (file name libkrun.so.1.17.3; its symbols agree: >= 1.17.3, < 1.18.0) is too old: needs >= 1.18.1", "stalls guest-to-host vsock after about 256 KiB"}},
		{name: "1.18.0", build: "11800", file: "libkrun.so.1.18.0", want: []string{
			"libkrun 1.18.0 (file name libkrun.so.1.18.0; its symbols agree: 1.18.x) is too old: needs >= 1.18.1 for the staged kernel", "stalls guest-to-host vsock",
			"vsock TX chains of more than two descriptors", "exit status 8"}},
		{name: "1.18.x by its symbols only", build: "11800", file: "libkrun.so.1", want: []string{
			"libkrun 1.18.x (symbols only: the file name libkrun.so.1 carries no version) cannot be told from 1.18.0, which is too old",
			"install libkrun under its versioned file name (libkrun.so.1.18.1", "or install libkrun 1.19 or newer"}},
		{name: "mislabelled", build: "11800", file: "libkrun.so.1.19.0", want: []string{
			"file name libkrun.so.1.19.0 says 1.19.0, but its symbols are those of 1.18.x: the symbols are trusted", "cannot be told from 1.18.0"}},
		{name: "1.18.1", build: "11800", file: "libkrun.so.1.18.1", log: "boxlite-vmm: libkrun 1.18.1 (file name libkrun.so.1.18.1; its symbols agree: 1.18.x)"},
		{name: "1.19.0", build: "11900", file: "libkrun.so.1.19.0", log: "boxlite-vmm: libkrun 1.19.0 (file name libkrun.so.1.19.0; its symbols agree: >= 1.19.0)"},
		{name: "1.19 by its symbols only", build: "11900", file: "libkrun.so.1", log: "boxlite-vmm: libkrun >= 1.19.0 (symbols only: the file name libkrun.so.1 carries no version)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.cfg.LibkrunPath = doubleAs(t, tc.build, tc.file)
			v, err := Start(context.Background(), e.cfg, reaper.Default())
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Start: %v", err)
				}
				vmmLog, _ := os.ReadFile(filepath.Join(v.StateDir(), VMMLogName))
				if !strings.Contains(string(vmmLog), tc.log) {
					t.Errorf("vmm.log %q lacks %q", vmmLog, tc.log)
				}
				if err := v.Stop(context.Background()); err != nil {
					t.Fatal(err)
				}
				e.assertClean(t)
				return
			}
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
			if !errdefs.IsFailedPrecondition(err) {
				t.Errorf("error is not ErrFailedPrecondition")
			}
			e.assertClean(t)
		})
	}
}

// A kernel without libkrunfw's TSI patch never gets TSI: the VMM disables
// libkrun's implicit vsock and adds it back with no TSI feature, before the
// vsock port; the workload then gets no "tsi_hijack" argument (the double
// passes it when TSI is on and the staged kernel lacks the patch, as the
// guest kernel would). The lean kernel keeps TSI, and consumes the word.
// Before -no-tsi the net kernel's workload got "tsi_hijack" as its first
// argument and exited with a usage error: seen failing.
func TestNoTSIWithoutThePatch(t *testing.T) {
	need(t)
	for _, tc := range []struct {
		variant kernel.Name
		blob    string
		tsi     bool
	}{
		{kernel.Lean, tb.lean, true},
		{kernel.Net, tb.net, false},
	} {
		t.Run(string(tc.variant), func(t *testing.T) {
			e := newEnv(t)
			e.cfg.Kernel = kernel.Source{Name: tc.variant, Path: tc.blob}
			v := e.start(t)
			dialAgent(t, v.AgentSocket())
			calls := readCalls(t, filepath.Join(v.StateDir(), "krun-calls.jsonl"))
			var order []string
			for _, c := range calls {
				switch name := c["call"].(string); name {
				case "krun_disable_implicit_vsock", "krun_add_vsock", "krun_add_vsock_port2":
					order = append(order, name)
					if c["ret"] != 0.0 {
						t.Errorf("%s failed: %v", name, c)
					}
					if name == "krun_add_vsock" && c["tsi_features"] != 0.0 {
						t.Errorf("krun_add_vsock with TSI features: %v", c)
					}
				}
			}
			// The agent's port and the ready port, after the TSI calls.
			want := []string{"krun_disable_implicit_vsock", "krun_add_vsock", "krun_add_vsock_port2", "krun_add_vsock_port2"}
			if tc.tsi {
				want = want[2:]
			}
			if !reflect.DeepEqual(order, want) {
				t.Errorf("vsock calls %v, want %v", order, want)
			}
			if fw := find(t, calls, "krunfw_load"); fw["tsi_patch"] != tc.tsi {
				t.Errorf("the double saw tsi_patch=%v in the %s kernel", fw["tsi_patch"], tc.variant)
			}
			se := find(t, calls, "krun_start_enter")
			if se["tsi"] != tc.tsi {
				t.Errorf("krun_start_enter: tsi=%v, want %v", se["tsi"], tc.tsi)
			}
			if got, want := fmt.Sprint(se["workload_argv"]), fmt.Sprint(e.cfg.Workload); got != want {
				t.Errorf("workload argv %s, want %s", got, want)
			}
		})
	}
}

// rawVMM is boxlite-vmm run directly (not through Start), as runtime/vmm
// would but with arguments a test chooses.
type rawVMM struct {
	cmd   *exec.Cmd
	sock  string // the agent socket on the host
	calls string // the double's call log
	done  chan struct{}
	err   error
}

// startRaw runs boxlite-vmm with the double, the given kernel, the extra
// flags and the workload, jailed in e.base with its state in e.state.
func startRaw(t *testing.T, e *env, kernelPath string, extra []string, workload ...string) *rawVMM {
	t.Helper()
	if err := os.MkdirAll(e.state, 0o700); err != nil {
		t.Fatal(err)
	}
	r := &rawVMM{sock: filepath.Join(e.state, AgentSocketName), calls: filepath.Join(e.state, "krun-calls.jsonl"), done: make(chan struct{})}
	args := append([]string{"-libkrun", tb.double, "-allow-test-double", "-jail", e.base, "-krunfw", kernelPath,
		"-cpus", "1", "-memory-mib", "512", "-root", "/root", "-vsock", "1024:/state/" + AgentSocketName,
		"-console", "/state/console.log", "-workdir", "/"}, extra...)
	r.cmd = exec.Command(tb.vmm, append(append(args, "--"), workload...)...)
	r.cmd.Dir = e.state
	r.cmd.Env = []string{"PATH=/usr/bin:/bin", "KRUN_DOUBLE_LOG=/state/krun-calls.jsonl"}
	logf, err := os.Create(filepath.Join(e.state, VMMLogName))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true,
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS | syscall.CLONE_NEWNET}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.err = r.cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		<-r.done
		for deadline := time.Now().Add(5 * time.Second); syscall.Kill(-r.cmd.Process.Pid, 0) == nil && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		os.RemoveAll(e.state)
	})
	return r
}

// exit waits for the VMM and returns its exit code and its log.
func (r *rawVMM) exit(t *testing.T, e *env) (int, string) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Fatal("boxlite-vmm did not exit")
	}
	b, _ := os.ReadFile(filepath.Join(e.state, VMMLogName))
	var ee *exec.ExitError
	if r.err != nil && !errors.As(r.err, &ee) {
		t.Fatal(r.err)
	}
	return r.cmd.ProcessState.ExitCode(), string(b)
}

// waitSocket waits for the agent socket to appear.
func (r *rawVMM) waitSocket(t *testing.T, e *env) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(r.sock); err == nil {
			return
		}
		select {
		case <-r.done:
			b, _ := os.ReadFile(filepath.Join(e.state, VMMLogName))
			c, _ := os.ReadFile(filepath.Join(e.state, "console.log"))
			t.Fatalf("boxlite-vmm exited (%v): %s\nconsole: %s", r.err, b, c)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no agent socket")
		}
	}
}

// The real agent as libkrun runs it: the workload of the guest's init (not
// PID 1), its argv led by the kernel command-line word the guest kernel did
// not know ("tsi_hijack": TSI on, a kernel without the patch). It must
// ignore the word, serve, make /tmp a tmpfs (init.krun makes none) and
// leave / rslave, not rshared as init.krun left it. Before, the agent
// exited 2 ("unexpected arguments"), and as a non-PID-1 process it mounted
// nothing: seen failing.
func TestAgentUnderInit(t *testing.T) {
	e := newEnv(t)
	copyFile(t, tb.agent, filepath.Join(e.root, "boxlite-agent"), 0o755)
	// No -no-tsi with a kernel that lacks the patch: what runtime/vmm never
	// does, so that the word reaches the agent.
	r := startRaw(t, e, tb.net, nil, "/boxlite-agent", "-vsock-port", "1024", "-cgroup-root", "/nocgroup/boxlite")
	r.waitSocket(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := agent.Dial(ctx, r.sock)
	if err != nil {
		console, _ := os.ReadFile(filepath.Join(e.state, "console.log"))
		t.Fatalf("dial the agent: %v\nconsole: %s", err, console)
	}
	defer c.Close()
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Pid == 1 || !info.OnHost {
		t.Errorf("agent Info: pid %d, on_host %v; want a pid other than 1, on the host (the double)", info.Pid, info.OnHost)
	}
	se := find(t, readCalls(t, r.calls), "krun_start_enter")
	if got := fmt.Sprint(se["workload_argv"]); got != "[/boxlite-agent tsi_hijack -vsock-port 1024 -cgroup-root /nocgroup/boxlite]" {
		t.Errorf("workload argv %s: want tsi_hijack before the agent's flags", got)
	}
	initPid := hostPid(t, r.cmd.Process.Pid, int(se["init_pid"].(float64)))
	kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", initPid, initPid))
	f := strings.Fields(string(kids))
	if len(f) != 1 {
		t.Fatalf("the guest's init %d has children %q, want the agent alone", initPid, kids)
	}
	agentPid, _ := strconv.Atoi(f[0])
	mounts, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", agentPid))
	if err != nil {
		t.Fatal(err)
	}
	if line := mountLine(string(mounts), "/tmp"); !strings.Contains(line, " - tmpfs ") {
		t.Errorf("/tmp in the agent's mount namespace is not a tmpfs: %q", line)
	}
	if line := mountLine(string(mounts), "/"); strings.Contains(line, " shared:") {
		t.Errorf("/ is still shared in the agent's mount namespace: %q", line)
	}
	console, _ := os.ReadFile(filepath.Join(e.state, "console.log"))
	if !strings.Contains(string(console), `ignoring arguments that are not the agent's`) || !strings.Contains(string(console), `["tsi_hijack"]`) {
		t.Errorf("the agent did not log the ignored word: %s", console)
	}
}

// As libkrun, the double refuses a listening vsock port whose path exists
// (-EEXIST, checked at krun_add_vsock_port2): boxlite-vmm fails with exit
// 5. Before, the double accepted it and only warned when binding: seen
// failing.
func TestVsockPortPathExists(t *testing.T) {
	e := newEnv(t)
	if err := os.MkdirAll(e.state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.state, AgentSocketName), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r := startRaw(t, e, tb.lean, nil, "/vmmworkload")
	code, log := r.exit(t, e)
	if code != 5 || !strings.Contains(log, "boxlite-vmm: krun_add_vsock_port2: File exists") {
		t.Errorf("boxlite-vmm exited %d: %s", code, log)
	}
}

// The guest kernel takes at most 32 init arguments and 32 environment
// variables besides its own (init/main.c, CONFIG_INIT_ENV_ARG_LIMIT): one
// more and it panics before the agent runs; the VMM exits 0. Start then
// fails, naming the limit. Before, the double ran the workload with any
// number of them: seen failing.
func TestGuestKernelLimits(t *testing.T) {
	need(t)
	env := func(n int) []string {
		var out []string
		for i := 0; i < n; i++ {
			out = append(out, fmt.Sprintf("V%d=%d", i, i))
		}
		return out
	}
	// The workload's arguments: "serve", the ready port, then n-2 more
	// (vmmworkload ignores them).
	args := func(n int) []string {
		out := []string{"/vmmworkload", "serve", "1025"}
		for i := 3; i <= n; i++ {
			out = append(out, "x"+strconv.Itoa(i))
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		env      []string
		workload []string
		want     string // "" = boots
	}{
		// HOME, TERM, KRUN_INIT, KRUN_WORKDIR + 29: 33 entries, the most.
		{name: "29 variables", env: env(29), workload: args(2)},
		{name: "30 variables", env: env(30), workload: args(2), want: "Too many boot env vars at `V29'"},
		{name: "32 arguments", env: env(1), workload: args(32)},
		{name: "33 arguments", env: env(1), workload: args(33), want: "Too many boot init vars at `x33'"},
		{name: "a variable named with a dot is dropped", env: append(env(29), "A.B=1"), workload: args(2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.cfg.Env, e.cfg.Workload = tc.env, tc.workload
			v, err := Start(context.Background(), e.cfg, reaper.Default())
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Start: %v", err)
				}
				if err := v.Stop(context.Background()); err != nil {
					t.Fatal(err)
				}
				e.assertClean(t)
				return
			}
			if err == nil {
				v.Stop(context.Background())
				t.Fatal("Start succeeded")
			}
			t.Logf("error: %v", err)
			for _, w := range []string{"exited before the guest was ready (exit status 0)", "CONFIG_INIT_ENV_ARG_LIMIT", tc.want, "before its console is up, and libkrun exits 0"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q", w)
				}
			}
			e.assertClean(t)
		})
	}
}

// A kernel command line libkrun cannot build (a byte outside printable
// ASCII, more than 64 KiB) makes libkrun panic in krun_start_enter: the
// double aborts the VMM, and Start says why. Before, the double ran the
// workload: seen failing.
func TestLibkrunCmdlinePanics(t *testing.T) {
	need(t)
	for _, tc := range []struct {
		name string
		env  []string
		want []string
	}{
		{"not ASCII", []string{"LANG=caf\u00e9"}, []string{"byte 0xc3, outside printable ASCII", "libkrun panic"}},
		{"a newline", []string{"A=1\n2"}, []string{"byte 0x0a, outside printable ASCII"}},
		{"over 64 KiB", []string{"BIG=" + strings.Repeat("x", 70<<10)}, []string{"over libkrun's 65536 (CMDLINE_MAX_SIZE)", "libkrun panic"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.cfg.Env = tc.env
			v, err := Start(context.Background(), e.cfg, reaper.Default())
			if err == nil {
				v.Stop(context.Background())
				t.Fatal("Start succeeded")
			}
			t.Logf("error: %.600s", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q", w)
				}
			}
			e.assertClean(t)
		})
	}
}

// vCPUs are bounded by libkrun's MP table (254) and by the kernel's
// CONFIG_NR_CPUS: the lean (libkrunfw) kernel's 16, the net kernel's from
// its embedded config. Before, 17 vCPUs started a lean guest that ran one
// idle and 255 went to libkrun: seen failing.
func TestCPUsBoundedByKernel(t *testing.T) {
	need(t)
	for _, tc := range []struct {
		name string
		src  kernel.Source
		cpus int
		want string // "" = starts
	}{
		{"lean 16", kernel.Source{Name: kernel.Lean, Path: tb.lean}, 16, ""},
		{"lean 17", kernel.Source{Name: kernel.Lean, Path: tb.lean}, 17, "17 vCPUs: kernel variant lean brings up at most 16 CPUs (libkrunfw's x86_64 config"},
		{"MP table", kernel.Source{Name: kernel.Lean, Path: tb.lean}, 255, "255 vCPUs: must be 1-254 (libkrun's x86_64 MP table holds at most 254)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.cfg.Kernel, e.cfg.CPUs = tc.src, tc.cpus
			v, err := Start(context.Background(), e.cfg, reaper.Default())
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Start: %v", err)
				}
				if vc := find(t, readCalls(t, filepath.Join(v.StateDir(), "krun-calls.jsonl")), "krun_set_vm_config"); vc["vcpus"] != float64(tc.cpus) {
					t.Errorf("krun_set_vm_config %v", vc)
				}
				if err := v.Stop(context.Background()); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				v.Stop(context.Background())
				t.Fatal("Start succeeded")
			}
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Start: %v, want an invalid-argument error with %q", err, tc.want)
			}
			e.assertClean(t)
		})
	}
	if tb.netReal {
		e := newEnv(t)
		e.cfg.Kernel, e.cfg.CPUs = kernel.Source{Name: kernel.Net, Path: tb.net}, 65
		if _, err := Start(context.Background(), e.cfg, reaper.Default()); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "at most 64 CPUs (CONFIG_NR_CPUS in the embedded config)") {
			t.Errorf("net, 65 vCPUs: %v", err)
		}
	}
}

// A VMM is told by its executable and by being PID 1 of a PID namespace
// one level below ours: the double's stand-in for the guest's init runs the
// same executable and is PID 1 too, one level further down, and must not be
// taken for a VMM (Find would have listed it beside the VMM: seen failing).
func TestFindTellsTheVMMFromTheGuestsInit(t *testing.T) {
	e := newEnv(t)
	v := e.start(t)
	se := find(t, readCalls(t, filepath.Join(v.StateDir(), "krun-calls.jsonl")), "krun_start_enter")
	initPid := hostPid(t, v.Pid(), int(se["init_pid"].(float64)))
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", initPid)); filepath.Base(exe) != VMMBinaryName {
		t.Fatalf("the guest's init %d runs %s, not boxlite-vmm: nothing to tell apart", initPid, exe)
	}
	if !IsVMM(v.Pid()) || IsVMM(initPid) {
		t.Errorf("IsVMM: VMM %d %v, the guest's init %d %v; want true, false", v.Pid(), IsVMM(v.Pid()), initPid, IsVMM(initPid))
	}
	if got := Find(e.base); !reflect.DeepEqual(got, []int{v.Pid()}) {
		t.Errorf("Find(%s) = %v, want [%d]", e.base, got, v.Pid())
	}
}

// hostPid is the host PID of the member of VMM vmmPid's process group whose
// PID in the VMM's PID namespace is nsPid (what the double logs).
func hostPid(t *testing.T, vmmPid, nsPid int) int {
	t.Helper()
	for _, pid := range reaper.GroupMembers(vmmPid) {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		if f := strings.Fields(statusField(string(status), "NSpid")); len(f) > 1 && f[1] == strconv.Itoa(nsPid) {
			return pid
		}
	}
	t.Fatalf("no member of process group %d is PID %d in the VMM's PID namespace", vmmPid, nsPid)
	return 0
}
