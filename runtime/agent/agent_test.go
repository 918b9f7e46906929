package agent

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/boxlite/boxlite-shim/runtime/agent/api"
)

func TestInfo(t *testing.T) {
	ta := startAgent(t)
	info, err := ta.c.Info(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var uts unix.Utsname
	unix.Uname(&uts)
	if !info.OnHost || !strings.Contains(info.Environment, "test double") {
		t.Errorf("under BOXLITE_TEST_DOUBLE=1 the agent must say it runs on the host: on_host=%v environment=%q", info.OnHost, info.Environment)
	}
	if want := unix.ByteSliceToString(uts.Release[:]); info.KernelRelease != want {
		t.Errorf("kernel release %q, want %q", info.KernelRelease, want)
	}
	if info.AgentVersion == "" || info.Hostname == "" || info.Pid != 1 {
		t.Errorf("info: %+v", info)
	}
	t.Logf("agent: version %s, %s, kernel %s, cgroup %s, controllers %v, warnings %q",
		info.AgentVersion, info.Environment, info.KernelRelease, info.CgroupRoot, info.CgroupControllers, info.Warnings)
}

func TestRun(t *testing.T) {
	ta := startAgent(t)
	withProcess := func(f func(p *specs.Process)) func(*specs.Spec) {
		return func(s *specs.Spec) { f(s.Process) }
	}
	cases := []struct {
		name   string
		args   []string
		modify func(*specs.Spec)
		stdin  string
		want   result
	}{
		{name: "exit-code-and-streams", args: []string{"sh", "-c", "echo hi; echo err >&2; exit 3"},
			want: result{stdout: "hi\n", stderr: "err\n", status: 3}},
		{name: "stdin-to-eof", args: []string{"cat"}, stdin: "line one\nline two\n", want: result{stdout: "line one\nline two\n"}},
		{name: "pid-1-and-hostname", args: []string{"sh", "-c", "echo $$ $(hostname)"}, want: result{stdout: "1 boxlite-test\n"}},
		{name: "user-groups-home", args: []string{"sh", "-c", "echo $(id -u) $(id -g) $(id -G) $HOME"},
			modify: withProcess(func(p *specs.Process) { p.User = specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{10}} }),
			want:   result{stdout: "1000 1000 1000 10 /home/user\n"}},
		{name: "cwd-env", args: []string{"sh", "-c", "pwd; echo $FOO"},
			modify: withProcess(func(p *specs.Process) { p.Cwd = "/tmp"; p.Env = append(p.Env, "FOO=bar") }),
			want:   result{stdout: "/tmp\nbar\n"}},
		{name: "rlimit", args: []string{"sh", "-c", "ulimit -n"}, want: result{stdout: "1024\n"}},
		// Nothing ignored or blocked leaks from the agent into the container.
		{name: "signal-dispositions", args: []string{"grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"},
			want: result{stdout: "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"}},
		{name: "no-new-privs-and-caps", args: []string{"sh", "-c", "grep -E '^(NoNewPrivs|CapEff|CapBnd)' /proc/self/status"},
			want: result{stdout: "CapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\nNoNewPrivs:\t1\n"}},
		{name: "masked-and-readonly-paths", args: []string{"sh", "-c", "wc -c < /proc/timer_list; ls /proc/acpi | wc -l; echo x 2>/dev/null > /proc/sys/kernel/domainname && echo rw || echo ro"},
			want: result{stdout: "0\n0\nro\n"}},
		{name: "readonly-root", args: []string{"sh", "-c", "touch /x 2>/dev/null && echo rw || echo ro"},
			modify: func(s *specs.Spec) { s.Root.Readonly = true }, want: result{stdout: "ro\n"}},
		{name: "devices-and-mounts", args: []string{"sh", "-c", "ls /dev/null /dev/zero /dev/urandom /dev/pts/ptmx /dev/shm /dev/mqueue >/dev/null && head -c 3 /dev/zero | wc -c && awk '$5 == \"/\"' /proc/self/mountinfo | wc -l && awk '{print $5}' /proc/self/mountinfo | grep -c -e unified -e " + ta.dir + "; exit 0"},
			want: result{stdout: "3\n1\n0\n"}},
		{name: "bind-mount-ro", args: []string{"sh", "-c", "cat /data/f; echo y 2>/dev/null > /data/g && echo rw || echo ro"},
			modify: func(s *specs.Spec) {
				d := filepath.Join(ta.dir, "data")
				os.MkdirAll(d, 0o755)
				os.WriteFile(filepath.Join(d, "f"), []byte("from host\n"), 0o644)
				s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: d, Options: []string{"rbind", "ro"}})
			},
			want: result{stdout: "from host\nro\n"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := testSpec(tc.args...)
			if tc.modify != nil {
				tc.modify(spec)
			}
			got := ta.run(t, "run"+string(rune('a'+i)), spec, tc.stdin)
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestStartErrors(t *testing.T) {
	ta := startAgent(t)
	ctx := ctxT(t, 20*time.Second)

	// A program that does not exist: Start says so, the container can go.
	if _, _, err := ta.c.Create(ctx, "noexe", testSpec("/bin/nope"), ta.rootfs, IO{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ta.c.Start(ctx, "noexe"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("start of a missing program: %v", err)
	}
	if err := ta.c.Delete(ctx, "noexe", false); err != nil {
		t.Errorf("delete after failed start: %v", err)
	}

	// A bad rootfs fails at create, and leaves no container behind.
	if _, _, err := ta.c.Create(ctx, "badroot", testSpec("true"), "/nonexistent", IO{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("create with a missing rootfs: %v", err)
	}
	if _, err := ta.c.Pids(ctx, "badroot"); !errdefs.IsNotFound(err) {
		t.Errorf("pids of a failed create: %v", err)
	}

	// Same id twice.
	if _, _, err := ta.c.Create(ctx, "dup", testSpec("sleep", "100"), ta.rootfs, IO{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ta.c.Create(ctx, "dup", testSpec("sleep", "100"), ta.rootfs, IO{}); !errdefs.IsAlreadyExists(err) {
		t.Errorf("second create: %v", err)
	}
	// A created, never started container can be deleted.
	if err := ta.c.Delete(ctx, "dup", false); err != nil {
		t.Errorf("delete created: %v", err)
	}

	// stdout asked for but never attached: Start refuses.
	b, _ := jsonMarshal(testSpec("true"))
	if _, err := ta.c.api.CreateContainer(ctx, &api.CreateContainerRequest{Id: "noattach", Spec: b, Rootfs: ta.rootfs, Stdio: &api.StdioConfig{Stdout: true}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ta.c.Start(ctx, "noattach"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("start with stdout unattached: %v", err)
	}
	if err := ta.c.Delete(ctx, "noattach", false); err != nil {
		t.Errorf("delete: %v", err)
	}

	// A running container is not deleted without force; started twice is an error.
	if _, _, err := ta.c.Create(ctx, "running", testSpec("sleep", "100"), ta.rootfs, IO{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ta.c.Start(ctx, "running"); err != nil {
		t.Fatal(err)
	}
	if _, err := ta.c.Start(ctx, "running"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("second start: %v", err)
	}
	if err := ta.c.Delete(ctx, "running", false); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("delete running without force: %v", err)
	}
	if err := ta.c.Delete(ctx, "running", true); err != nil {
		t.Errorf("force delete: %v", err)
	}
	if _, err := ta.c.Wait(ctx, "running", ""); !errdefs.IsNotFound(err) {
		t.Errorf("wait after delete: %v", err)
	}
}

func TestCloseStdin(t *testing.T) {
	ta := startAgent(t)
	ctx := ctxT(t, 20*time.Second)
	pr, pw := io.Pipe() // never reaches EOF by itself
	var out syncBuffer
	_, att, err := ta.c.Create(ctx, "cat", testSpec("cat"), ta.rootfs, IO{Stdin: pr, Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	defer ta.c.Delete(ctx, "cat", true)
	if _, err := ta.c.Start(ctx, "cat"); err != nil {
		t.Fatal(err)
	}
	if _, err := pw.Write([]byte("through cat\n")); err != nil {
		t.Fatal(err)
	}
	// Wait until cat has echoed it, then close stdin: cat must end.
	waitFor(t, func() bool { return out.String() == "through cat\n" }, "cat's output")
	if err := att.CloseStdin(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := ta.c.Wait(ctx, "cat", "")
	if err != nil {
		t.Fatal(err)
	}
	att.Wait()
	if st.Status != 0 || out.String() != "through cat\n" {
		t.Errorf("status %d, output %q", st.Status, out.String())
	}
	if st.ExitedAt.IsZero() || time.Since(st.ExitedAt) > time.Minute {
		t.Errorf("exited_at %v", st.ExitedAt)
	}
}

func TestTerminal(t *testing.T) {
	ta := startAgent(t)
	ctx := ctxT(t, 20*time.Second)

	spec := testSpec("sh", "-c", "tty; stty size")
	spec.Process.Terminal = true
	spec.Process.ConsoleSize = &specs.Box{Height: 20, Width: 40}
	var out syncBuffer
	_, att, err := ta.c.Create(ctx, "tty", spec, ta.rootfs, IO{Stdout: &out, Terminal: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ta.c.Delete(ctx, "tty", true)
	if _, err := ta.c.Start(ctx, "tty"); err != nil {
		t.Fatal(err)
	}
	st, err := ta.c.Wait(ctx, "tty", "")
	if err != nil {
		t.Fatal(err)
	}
	att.Wait()
	if got := out.String(); st.Status != 0 || got != "/dev/pts/0\r\n20 40\r\n" {
		t.Errorf("status %d, output %q; want /dev/pts/0 and 20 40 with CRLF", st.Status, got)
	}

	// A terminal exec, resized while it runs.
	if _, _, err := ta.c.Create(ctx, "box", testSpec("sleep", "100"), ta.rootfs, IO{}); err != nil {
		t.Fatal(err)
	}
	defer ta.c.Delete(ctx, "box", true)
	if _, err := ta.c.Start(ctx, "box"); err != nil {
		t.Fatal(err)
	}
	proc := testSpec("sh", "-c", "tty; read x; stty size").Process
	proc.Terminal = true
	pr, pw := io.Pipe()
	var eout syncBuffer
	_, eatt, err := ta.c.Exec(ctx, "box", "term", proc, IO{Stdin: pr, Stdout: &eout, Terminal: true})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(eout.String(), "/dev/pts/") }, "tty output of the exec")
	if err := ta.c.ResizePty(ctx, "box", "term", 100, 30); err != nil {
		t.Fatal(err)
	}
	pw.Write([]byte("\n"))
	st, err = ta.c.Wait(ctx, "box", "term")
	if err != nil {
		t.Fatal(err)
	}
	eatt.Wait()
	if got := eout.String(); st.Status != 0 || !strings.HasSuffix(got, "30 100\r\n") {
		t.Errorf("exec: status %d, output %q; want the new size 30 100", st.Status, got)
	}
	if err := ta.c.ResizePty(ctx, "box", "", 10, 10); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("resize of a process with no terminal: %v", err)
	}
}

func TestExecPidsSignals(t *testing.T) {
	ta := startAgent(t)
	ctx := ctxT(t, 30*time.Second)
	if _, _, err := ta.c.Create(ctx, "box", testSpec("sleep", "100"), ta.rootfs, IO{}); err != nil {
		t.Fatal(err)
	}
	defer ta.c.Delete(ctx, "box", true)
	initPid, err := ta.c.Start(ctx, "box")
	if err != nil {
		t.Fatal(err)
	}

	exec := func(id string, user uint32, args ...string) (result, error) {
		proc := testSpec(args...).Process
		proc.User = specs.User{UID: user, GID: user}
		var out, errb syncBuffer
		_, att, err := ta.c.Exec(ctx, "box", id, proc, IO{Stdout: &out, Stderr: &errb})
		if err != nil {
			return result{}, err
		}
		st, err := ta.c.Wait(ctx, "box", id)
		if err != nil {
			return result{}, err
		}
		att.Wait()
		if err := ta.c.DeleteProcess(ctx, "box", id); err != nil {
			t.Errorf("delete exec %s: %v", id, err)
		}
		return result{out.String(), errb.String(), st.Status}, nil
	}
	cases := []struct {
		name string
		user uint32
		args []string
		want result
	}{
		{"exit-code", 0, []string{"sh", "-c", "echo exec-out; echo exec-err >&2; exit 5"}, result{"exec-out\n", "exec-err\n", 5}},
		{"killed-by-signal", 0, []string{"sh", "-c", "kill -9 $$"}, result{status: 137}},
		// It is in the container: its PID namespace (init is PID 1 there,
		// sleep), its UTS namespace, its root, its mounts.
		{"namespaces", 0, []string{"sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; hostname; ls /bin/busybox; test $$ -ne 1 && echo not-pid-1"},
			result{stdout: "sleep 100 \nboxlite-test\n/bin/busybox\nnot-pid-1\n"}},
		{"user", 1000, []string{"sh", "-c", "id -u; echo $HOME"}, result{stdout: "1000\n/home/user\n"}},
		{"caps-nnp", 0, []string{"sh", "-c", "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status"}, result{stdout: "CapEff:\t00000000a80425fb\nNoNewPrivs:\t1\n"}},
		{"signal-dispositions", 0, []string{"grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"}, result{stdout: "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := exec("e-"+tc.name, tc.user, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
	if _, err := exec("e-missing", 0, "/bin/nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("exec of a missing program: %v", err)
	}

	// Two long-running execs: Pids lists init and both, with their exec ids.
	for _, id := range []string{"s1", "s2"} {
		if _, _, err := ta.c.Exec(ctx, "box", id, testSpec("sleep", "100").Process, IO{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := ta.c.Exec(ctx, "box", "s1", testSpec("true").Process, IO{}); !errdefs.IsAlreadyExists(err) {
		t.Errorf("exec id reused: %v", err)
	}
	procs, err := ta.c.Pids(ctx, "box")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, p := range procs {
		got[p.ExecId] = true
		if p.ExecId == "" && int(p.Pid) != initPid {
			t.Errorf("pids: %d without exec id, init is %d", p.Pid, initPid)
		}
	}
	if len(procs) != 3 || !got[""] || !got["s1"] || !got["s2"] {
		t.Errorf("pids: %v, want init, s1 and s2", procs)
	}

	// Signals: SIGTERM to one exec, SIGKILL to another.
	if err := ta.c.Signal(ctx, "box", "s1", syscall.SIGTERM, false); err != nil {
		t.Fatal(err)
	}
	if st, err := ta.c.Wait(ctx, "box", "s1"); err != nil || st.Status != 128+15 {
		t.Errorf("s1 after SIGTERM: %+v %v", st, err)
	}
	if err := ta.c.Signal(ctx, "box", "s1", syscall.SIGTERM, false); !errdefs.IsNotFound(err) {
		t.Errorf("signal to an exited process: %v", err)
	}
	if err := ta.c.DeleteProcess(ctx, "box", "s2"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("delete of a running exec: %v", err)
	}
	// all: every process of the container, init included.
	if err := ta.c.Signal(ctx, "box", "", syscall.SIGKILL, true); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"s2", ""} {
		if st, err := ta.c.Wait(ctx, "box", id); err != nil || st.Status != 137 {
			t.Errorf("%q after SIGKILL to all: %+v %v", id, st, err)
		}
	}
}

func TestSignalInit(t *testing.T) {
	ta := startAgent(t)
	cases := []struct {
		name string
		args []string
		sig  syscall.Signal
		want uint32
	}{
		// PID 1 of a namespace gets only the signals it handles.
		{"sigterm-trapped", []string{"sh", "-c", "trap 'exit 7' TERM; echo ready; while true; do sleep 0.05; done"}, syscall.SIGTERM, 7},
		{"sigkill", []string{"sh", "-c", "echo ready; sleep 100"}, syscall.SIGKILL, 137},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxT(t, 20*time.Second)
			var out syncBuffer
			_, att, err := ta.c.Create(ctx, tc.name, testSpec(tc.args...), ta.rootfs, IO{Stdout: &out})
			if err != nil {
				t.Fatal(err)
			}
			defer ta.c.Delete(ctx, tc.name, true)
			if _, err := ta.c.Start(ctx, tc.name); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { return out.String() == "ready\n" }, "ready")
			if err := ta.c.Signal(ctx, tc.name, "", tc.sig, false); err != nil {
				t.Fatal(err)
			}
			st, err := ta.c.Wait(ctx, tc.name, "")
			att.Wait()
			if err != nil || st.Status != tc.want {
				t.Errorf("status %+v %v, want %d", st, err, tc.want)
			}
		})
	}
}

func TestCgroup(t *testing.T) {
	ta := startAgent(t)
	ctx := ctxT(t, 20*time.Second)
	info, err := ta.c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hasMemory := slices.Contains(info.CgroupControllers, "memory")
	spec := testSpec("sh", "-c", "while true; do sleep 0.05; done")
	limit, pids := int64(256<<20), int64(100)
	spec.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}, Pids: &specs.LinuxPids{Limit: &pids}}
	res, _, err := ta.c.Create(ctx, "cg", spec, ta.rootfs, IO{})
	if err != nil {
		t.Fatal(err)
	}
	if !hasMemory && !containsSub(res.Warnings, "memory.max") {
		t.Errorf("a memory limit the guest cannot apply must come back as a warning: %q", res.Warnings)
	}
	t.Logf("create warnings: %q", res.Warnings)
	defer ta.c.Delete(ctx, "cg", true)
	if _, err := ta.c.Start(ctx, "cg"); err != nil {
		t.Fatal(err)
	}

	t.Run("stats", func(t *testing.T) {
		st, err := ta.c.Stats(ctx, "cg")
		if err != nil {
			t.Fatal(err)
		}
		if st.Cpu == nil {
			t.Errorf("no cpu stats: %v", st.Unavailable)
		}
		if hasMemory {
			if st.Memory == nil || st.Memory.Usage == 0 {
				t.Errorf("memory controller present but no memory usage: %+v", st.Memory)
			}
		} else {
			if st.Memory != nil || !containsSub(st.Unavailable, "no cgroup v2 memory controller") {
				t.Errorf("without a memory controller the memory stats must be absent and said so: %+v %q", st.Memory, st.Unavailable)
			}
			t.Logf("this host gives no cgroup v2 memory controller: Stats says %q", st.Unavailable)
		}
	})

	t.Run("update", func(t *testing.T) {
		limit := int64(64 << 20)
		err := ta.c.Update(ctx, "cg", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}})
		if hasMemory {
			if err != nil {
				t.Fatal(err)
			}
			st, err := ta.c.Stats(ctx, "cg")
			if err != nil || st.Memory.Limit != uint64(limit) {
				t.Errorf("memory limit after update: %+v %v", st.Memory, err)
			}
		} else {
			if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "memory controller") {
				t.Errorf("update of a memory limit without a memory controller: %v", err)
			}
			t.Logf("this host gives no cgroup v2 memory controller: Update says %v", err)
		}
	})

	t.Run("pause-resume", func(t *testing.T) {
		if err := ta.c.Pause(ctx, "cg"); err != nil {
			t.Fatal(err)
		}
		if dir := ta.hostCgroupDir("cg"); dir != "" {
			if ev, _ := os.ReadFile(filepath.Join(dir, "cgroup.events")); !strings.Contains(string(ev), "frozen 1") {
				t.Errorf("paused, but %s/cgroup.events says %q", dir, ev)
			}
		}
		if err := ta.c.Resume(ctx, "cg"); err != nil {
			t.Fatal(err)
		}
		if dir := ta.hostCgroupDir("cg"); dir != "" {
			if ev, _ := os.ReadFile(filepath.Join(dir, "cgroup.events")); !strings.Contains(string(ev), "frozen 0") {
				t.Errorf("resumed, but %s/cgroup.events says %q", dir, ev)
			}
		}
		// It runs again: an exec completes.
		if _, att, err := ta.c.Exec(ctx, "cg", "after", testSpec("true").Process, IO{}); err != nil {
			t.Fatal(err)
		} else if st, err := ta.c.Wait(ctx, "cg", "after"); err != nil || st.Status != 0 {
			t.Errorf("exec after resume: %+v %v", st, err)
		} else {
			att.Wait()
		}
	})
}

func TestOOM(t *testing.T) {
	ta := startAgent(t)
	ctx := ctxT(t, 30*time.Second)
	info, err := ta.c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(info.CgroupControllers, "memory") {
		t.Skipf("no cgroup v2 memory controller where the agent runs (controllers: %v; agent warnings: %q): an OOM kill cannot be provoked", info.CgroupControllers, info.Warnings)
	}
	spec := testSpec("sh", "-c", "a=xxxxxxxxxxxxxxxx; while true; do a=$a$a; done")
	limit := int64(32 << 20)
	swap := limit
	spec.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit, Swap: &swap}}
	if _, _, err := ta.c.Create(ctx, "hog", spec, ta.rootfs, IO{}); err != nil {
		t.Fatal(err)
	}
	defer ta.c.Delete(ctx, "hog", true)
	if _, err := ta.c.Start(ctx, "hog"); err != nil {
		t.Fatal(err)
	}
	st, err := ta.c.Wait(ctx, "hog", "")
	if err != nil || st.Status != 137 {
		t.Fatalf("hog: %+v %v, want 137", st, err)
	}
	ev, err := ta.c.NextEvent(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != api.Event_OOM || ev.ContainerId != "hog" || ev.Seq > st.EventsSeq {
		t.Errorf("event %+v (exit's events_seq %d): want the OOM before the exit", ev, st.EventsSeq)
	}
}

// An exec that leaves a background process holding its stdout: Wait returns
// after the grace period with the output so far, not when the background
// process ends.
func TestExecOutputHeldOpen(t *testing.T) {
	ta := startAgent(t)
	ctx := ctxT(t, 20*time.Second)
	if _, _, err := ta.c.Create(ctx, "box", testSpec("sleep", "100"), ta.rootfs, IO{}); err != nil {
		t.Fatal(err)
	}
	defer ta.c.Delete(ctx, "box", true)
	if _, err := ta.c.Start(ctx, "box"); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	begin := time.Now()
	_, att, err := ta.c.Exec(ctx, "box", "bg", testSpec("sh", "-c", "sleep 30 & echo started; exit 4").Process, IO{Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	st, err := ta.c.Wait(ctx, "box", "bg")
	if err != nil {
		t.Fatal(err)
	}
	att.Wait()
	if took := time.Since(begin); st.Status != 4 || out.String() != "started\n" || took > 10*time.Second {
		t.Errorf("status %d, output %q, after %s", st.Status, out.String(), took)
	}
}

// Shutdown with containers still running: everything goes, nothing stays on
// the host (startAgent's cleanup checks mounts and cgroups).
func TestShutdownWithRunningContainers(t *testing.T) {
	ta := startAgent(t)
	ctx := ctxT(t, 20*time.Second)
	for _, id := range []string{"a", "b"} {
		if _, _, err := ta.c.Create(ctx, id, testSpec("sleep", "100"), ta.rootfs, IO{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ta.c.Start(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ta.c.Exec(ctx, "a", "x", testSpec("sleep", "100").Process, IO{}); err != nil {
		t.Fatal(err)
	}
	// "b" stays created, never started.
}

// SIGTERM to the agent: it cleans up like Shutdown and exits 0.
func TestSigtermShutsDown(t *testing.T) {
	ta := startAgent(t)
	ctx := ctxT(t, 20*time.Second)
	if _, _, err := ta.c.Create(ctx, "a", testSpec("sleep", "100"), ta.rootfs, IO{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ta.c.Start(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	ta.c.Close()
	ta.c = nil // stop() then only waits and checks what is left
	if err := ta.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ta.exited:
		if err != nil {
			t.Errorf("agent after SIGTERM: %v", err)
		}
		ta.exited <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not exit on SIGTERM")
	}
}

func TestNextEventWaits(t *testing.T) {
	ta := startAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := ta.c.NextEvent(ctx, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("NextEvent with no event: %v, want a deadline", err)
	}
}

func containsSub(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Without LISTEN_FDS the agent listens on AF_VSOCK (there is no vsock
// transport on this host to connect through, so only the listening is seen).
func TestVsockListen(t *testing.T) {
	if skipReason != "" {
		t.Skip(skipReason)
	}
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Skipf("no AF_VSOCK on this host: %v", err)
	}
	unix.Close(fd)
	var log syncBuffer
	cmd := exec.Command(agentBin, "-init", "no", "-vsock-port", "47123", "-cgroup-root", "/nonexistent/boxlite")
	cmd.Env = []string{"PATH=/bin"}
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	waitFor(t, func() bool { return strings.Contains(log.String(), "serving on vsock:47123") }, "the agent to listen on vsock port 47123")
	if !strings.Contains(log.String(), ", vm, ") {
		t.Errorf("without BOXLITE_TEST_DOUBLE the agent takes itself for the VM's: %s", log.String())
	}
}

// An agent given a pod network it cannot set up exits 1 and says why, before
// serving anything.
func TestAgentNetworkFailure(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, file, want string }{
		{"missing file", "", "no such file or directory"},
		{"bad JSON", "{", "network.json"},
		{"no interface with the MAC", `{"mac":"02:00:00:00:00:09","mtu":1500,"addrs":["10.9.0.2/24"]}`, "no interface has MAC 02:00:00:00:00:09"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "network.json")
			_ = os.Remove(path)
			if tc.file != "" {
				if err := os.WriteFile(path, []byte(tc.file), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			// In a network namespace of its own: it must not touch the host's.
			cmd := exec.Command("unshare", "--net", agentBin, "-init", "no", "-network", path)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "the pod network cannot be set up") || !strings.Contains(string(out), tc.want) {
				t.Errorf("agent: %v, output %q; want exit 1 naming %q", err, out, tc.want)
			}
		})
	}
}
