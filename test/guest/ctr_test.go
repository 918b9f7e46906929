package guest

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/boxlite/boxlite-shim/test/ctrd"
)

// TestCtr drives the shim with the real ctr against a private containerd
// 2.4, every sandbox a guest booted on the emulated engine. Each subtest
// checks that nothing of ours remains.
func TestCtr(t *testing.T) {
	s := newSuite(t)
	versions := kernelVersions(t, s.cfg)

	// The kernel variant the annotation asks for is the guest's: its
	// release as `kernels` reports it, and legacy iptables (ip_tables) in
	// net only, seen from inside the container with Debian's iptables.
	t.Run("kernel", func(t *testing.T) {
		script := `uname -r
if test -e /proc/net/ip_tables_names; then echo ip_tables_names=yes; else echo ip_tables_names=no; fi
iptables -V
iptables -A INPUT -s 192.0.2.7 -j DROP && iptables -L INPUT -n
echo iptables=$?`
		for _, tc := range []struct {
			variant  string
			iptables bool
		}{
			{"lean", false},
			{"net", true},
		} {
			t.Run(tc.variant, func(t *testing.T) {
				t.Cleanup(func() { s.assertClean(t) })
				if versions[tc.variant] == "" {
					t.Fatalf("`kernels` reports no version for %s: %v", tc.variant, versions)
				}
				id := "k-" + tc.variant
				start := time.Now()
				// CAP_NET_ADMIN, as iptables needs (and dockerd has).
				out, errOut, code := s.run(t, []string{"--annotation", "io.boxlite.kernel=" + tc.variant, "--cap-add", "CAP_NET_ADMIN"}, s.iptImg, id, "sh", "-c", script)
				t.Logf("%s: ctr run (VMM start, guest boot, container, exit) in %s under TCG:\n%s%s", tc.variant, time.Since(start).Round(time.Millisecond), out, errOut)
				lines := strings.Split(out, "\n")
				if code != 0 || len(lines) < 3 {
					t.Fatalf("ctr run: exit %d, stdout %q, stderr %q", code, out, errOut)
				}
				if lines[0] != versions[tc.variant] {
					t.Errorf("uname -r in the container: %q, want the %s kernel's %q", lines[0], tc.variant, versions[tc.variant])
				}
				if want := map[bool]string{true: "ip_tables_names=yes", false: "ip_tables_names=no"}[tc.iptables]; lines[1] != want {
					t.Errorf("%s: %s, want %s", tc.variant, lines[1], want)
				}
				if !strings.Contains(lines[2], "(legacy)") {
					t.Errorf("iptables -V: %q, want the legacy one", lines[2])
				}
				if tc.iptables {
					if !strings.Contains(out, "iptables=0") || !strings.Contains(out, "Chain INPUT (policy ACCEPT)") || !strings.Contains(out, "DROP") || !strings.Contains(out, "192.0.2.7") {
						t.Errorf("net: legacy iptables should add and list a rule:\n%s%s", out, errOut)
					}
				} else if strings.Contains(out, "iptables=0") || !strings.Contains(errOut, "Table does not exist") {
					t.Errorf("lean: legacy iptables should fail (no ip_tables):\n%s%s", out, errOut)
				}
			})
		}
		// The shim said what it ran on, and the agent answered from a VM.
		s.waitLog(t, "QEMU software emulation standing in for libkrun + KVM (tests only)", "sandbox=k-lean")
		s.waitLog(t, "sandbox booted", "environment=vm", "kernel=net", "sandbox=k-net")
	})

	// A memory-limited container that allocates past its limit is killed
	// by the guest kernel's OOM killer: TaskOOM, then TaskExit, status 137.
	t.Run("oom", func(t *testing.T) {
		t.Cleanup(func() { s.assertClean(t) })
		ev := s.events(t)
		id := "oom1"
		_, errOut, code := s.run(t, []string{"--memory-limit", fmt.Sprint(32 << 20)}, s.img, id, "sh", "-c", "x=a; while :; do x=$x$x; done")
		if code != 137 {
			t.Errorf("memory hog: exit %d, want 137: %s", code, errOut)
		}
		got := waitTopics(t, ev, id, "/tasks/delete")
		oom, exit := index(got, "/tasks/oom"), index(got, "/tasks/exit "+id)
		if oom < 0 || exit < 0 || oom > exit {
			t.Errorf("task events %q: want /tasks/oom before /tasks/exit", got)
		}
	})

	// One container for the process operations: exec (exit status,
	// streams, stdin to its end), a TTY exec resized while it runs, ps,
	// pause and resume, metrics from the guest's cgroups while the
	// container allocates memory and burns CPU, and kill --all, which ends
	// the exec too.
	t.Run("processes", func(t *testing.T) {
		t.Cleanup(func() { s.assertClean(t) })
		id := "proc1"
		// It allocates ~40 MB once told to (/tmp/go), then idles.
		init := `while [ ! -e /tmp/go ]; do sleep 0.1; done; x=$(head -c 40000000 /dev/zero | tr '\0' a); touch /tmp/allocated; while :; do sleep 0.1; done`
		s.startDetached(t, nil, s.img, id, "sh", "-c", init)
		s.d.WaitRunning(t, ctrd.CtxFor(t, time.Minute), id)

		t.Run("exec", func(t *testing.T) {
			cmd := s.d.CtrCommand(ctrd.CtxFor(t, time.Minute), "task", "exec", "--exec-id", "e1", id, "sh", "-c", "echo out; echo err >&2; exit 5")
			var o, e strings.Builder
			cmd.Stdout, cmd.Stderr = &o, &e
			if code := ctrd.ExitCode(cmd.Run()); code != 5 || o.String() != "out\n" || !strings.Contains(e.String(), "err") {
				t.Errorf("exec: exit %d, stdout %q, stderr %q; want 5, out, err", code, o.String(), e.String())
			}
			if out, err := s.exec(t, id, "e2", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '"); err != nil || !strings.HasPrefix(out, "sh -c while") {
				t.Errorf("exec sees the container's init as PID 1: %v %q", err, out)
			}
			if out, err := s.exec(t, id, "e3", "uname", "-r"); err != nil || strings.TrimSpace(out) != versions["lean"] {
				t.Errorf("exec runs in the guest: uname -r %v %q, want %q", err, out, versions["lean"])
			}
			// stdin reaches the process, and so does its end.
			in := s.d.CtrCommand(ctrd.CtxFor(t, time.Minute), "task", "exec", "--exec-id", "e4", id, "sh", "-c", "cat; echo done")
			in.Stdin = strings.NewReader("line one\nline two\n")
			if out, err := in.Output(); err != nil || string(out) != "line one\nline two\ndone\n" {
				t.Errorf("exec with stdin: %v %q", err, out)
			}
		})

		t.Run("tty-resize", func(t *testing.T) {
			term := ctrd.OpenPty(t, 30, 90)
			// Prints the size, and again each time it changes.
			script := `last=; while :; do s=$(stty size); if [ "$s" != "$last" ]; then echo "size:$s"; last=$s; fi; case $s in "45 132") exit 7;; esac; sleep 0.05; done`
			cmd := s.d.CtrCommand(ctrd.CtxFor(t, time.Minute), "task", "exec", "-t", "--exec-id", "t1", id, "sh", "-c", script)
			term.Attach(cmd)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			term.CloseSlave()
			out := term.Reader()
			if _, err := out.WaitFor("size:30 90"); err != nil {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("the terminal's size did not reach the guest: %v", err)
			}
			if err := term.Resize(45, 132); err != nil {
				t.Fatal(err)
			}
			err := cmd.Wait()
			all, _ := out.WaitFor("\x00never") // everything until the terminal closes
			if code := ctrd.ExitCode(err); code != 7 || !strings.Contains(all, "size:45 132") {
				t.Errorf("ctr task exec -t, resized: exit %d (%v), want 7 and size 45 132; terminal %q", code, err, all)
			}
		})

		t.Run("ps", func(t *testing.T) {
			out, err := s.d.CtrStdout(ctrd.CtxFor(t, time.Minute), "task", "ps", id)
			if err != nil || len(strings.Split(strings.TrimSpace(out), "\n")) < 2 {
				t.Errorf("ctr task ps: %v\n%s", err, out)
			}
			t.Logf("ctr task ps:\n%s", out)
		})

		t.Run("pause-resume", func(t *testing.T) {
			for _, step := range []struct{ cmd, want string }{{"pause", "PAUSED"}, {"resume", "RUNNING"}} {
				if out, err := s.d.Ctr(ctrd.CtxFor(t, time.Minute), "task", step.cmd, id); err != nil {
					t.Fatalf("ctr task %s: %v: %s", step.cmd, err, out)
				}
				if st := s.d.TaskStatus(t, id); st != step.want {
					t.Errorf("after ctr task %s the task is %s, want %s", step.cmd, st, step.want)
				}
			}
			if out, err := s.exec(t, id, "after-resume", "echo", "alive"); err != nil || out != "alive\n" {
				t.Errorf("exec after resume: %v %q", err, out)
			}
		})

		t.Run("metrics", func(t *testing.T) {
			before := metrics(t, s, id)
			if _, err := s.exec(t, id, "go", "touch", "/tmp/go"); err != nil {
				t.Fatal(err)
			}
			waitFile(t, s, id, "/tmp/allocated")
			after := metrics(t, s, id)
			t.Logf("guest cgroup metrics: memory %d -> %d bytes, cpu %d -> %d us, pids %d", before.Memory.Usage, after.Memory.Usage, before.CPU.UsageUsec, after.CPU.UsageUsec, after.Pids.Current)
			if after.Memory.Usage < before.Memory.Usage+30<<20 {
				t.Errorf("memory usage %d -> %d: want it to rise by the ~40 MB the container holds", before.Memory.Usage, after.Memory.Usage)
			}
			if after.CPU.UsageUsec <= before.CPU.UsageUsec {
				t.Errorf("cpu usage %d -> %d us: want it to advance", before.CPU.UsageUsec, after.CPU.UsageUsec)
			}
			if after.Pids.Current < 2 {
				t.Errorf("pids.current %d: want the init and its sleep at least", after.Pids.Current)
			}
		})

		t.Run("kill-all", func(t *testing.T) {
			bg := s.d.CtrCommand(ctrd.CtxFor(t, time.Minute), "task", "exec", "--exec-id", "bg", id, "sh", "-c", "echo ready; exec sleep 1000")
			r := ctrd.StartUntilReady(t, bg)
			if out, err := s.d.Ctr(ctrd.CtxFor(t, time.Minute), "task", "kill", "-s", "SIGKILL", "--all", id); err != nil {
				t.Fatalf("ctr task kill --all: %v: %s", err, out)
			}
			_, _ = io.ReadAll(r)
			if code := ctrd.ExitCode(bg.Wait()); code != 137 {
				t.Errorf("the exec after kill --all: exit %d, want 137", code)
			}
			deadline := time.Now().Add(time.Minute)
			for s.d.TaskStatus(t, id) != "STOPPED" && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			// ctr has no task wait; ctr task delete says a non-zero status.
			out, err := s.d.Ctr(ctrd.CtxFor(t, time.Minute), "task", "delete", id)
			if err != nil || !strings.Contains(out, "exit code 137") {
				t.Errorf("the init after kill --all: ctr task delete: %v %q, want exit code 137", err, out)
			}
		})
	})

	// The init's stdin and its end; a signal the container handles.
	t.Run("stdin-and-signal", func(t *testing.T) {
		t.Cleanup(func() { s.assertClean(t) })
		cmd := s.d.CtrCommand(ctrd.CtxFor(t, 2*time.Minute), s.runArgs("--rm", s.img, "stdin1", "sh", "-c", "cat; echo done; exit 3")...)
		cmd.Stdin = strings.NewReader("line one\nline two\n")
		var o strings.Builder
		cmd.Stdout = &o
		if code := ctrd.ExitCode(cmd.Run()); code != 3 || o.String() != "line one\nline two\ndone\n" {
			t.Errorf("ctr run with stdin: exit %d, stdout %q; want 3 and the lines, then done", code, o.String())
		}

		id := "term1"
		run := s.d.CtrCommand(ctrd.CtxFor(t, 2*time.Minute), s.runArgs("--rm", s.img, id, "sh", "-c", `trap "echo terminated; exit 42" TERM; echo ready; while :; do sleep 0.1; done`)...)
		r := ctrd.StartUntilReady(t, run)
		s.d.WaitRunning(t, ctrd.CtxFor(t, time.Minute), id)
		if out, err := s.d.Ctr(ctrd.CtxFor(t, time.Minute), "task", "kill", "-s", "SIGTERM", id); err != nil {
			t.Fatalf("ctr task kill: %v: %s", err, out)
		}
		rest, _ := io.ReadAll(r)
		if code := ctrd.ExitCode(run.Wait()); code != 42 || !strings.Contains(string(rest), "terminated") {
			t.Errorf("after SIGTERM: exit %d, output %q; want 42 from the trap", code, rest)
		}
	})
}

// cgroupMetrics is what `ctr task metrics --format json` shows of the
// guest's cgroup v2 statistics.
type cgroupMetrics struct {
	Pids struct {
		Current uint64 `json:"current"`
	} `json:"pids"`
	CPU struct {
		UsageUsec uint64 `json:"usage_usec"`
	} `json:"cpu"`
	Memory struct {
		Usage uint64 `json:"usage"`
	} `json:"memory"`
}

func metrics(t *testing.T, s *suite, id string) cgroupMetrics {
	t.Helper()
	out, err := s.d.CtrStdout(ctrd.CtxFor(t, time.Minute), "task", "metrics", "--format", "json", id)
	if err != nil {
		t.Fatalf("ctr task metrics: %v", err)
	}
	var m cgroupMetrics
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("ctr task metrics --format json: %v\n%s", err, out)
	}
	return m
}

// waitFile waits until path exists in container id.
func waitFile(t *testing.T, s *suite, id, path string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; ; i++ {
		if _, err := s.exec(t, id, fmt.Sprintf("wait%d", i), "test", "-e", path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear in %s", path, id)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func index(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

// kill SIGKILLs pid.
func kill(pid int) error { return unix.Kill(pid, unix.SIGKILL) }
