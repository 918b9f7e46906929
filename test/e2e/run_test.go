package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	_ "github.com/containerd/containerd/v2/core/runtime" // registers the OCI types' type URLs
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/boxlite/boxlite-shim/runtime/sandbox"
	"github.com/boxlite/boxlite-shim/runtime/vmm"
	"github.com/boxlite/boxlite-shim/test/ctrd"
	"github.com/boxlite/boxlite-shim/test/sandboxtest"
)

// TestCtr drives the shim with the real ctr against a private containerd
// 2.4: every sandbox is a VMM process running the guest agent through the
// libkrun test double. Each subtest checks that nothing of ours remains.
func TestCtr(t *testing.T) {
	s := newSuite(t)

	t.Run("run", func(t *testing.T) {
		cases := []struct {
			name      string
			args      []string
			stdin     string
			code      int
			stdout    string
			stderrHas string
		}{
			{name: "exit-code", args: []string{"sh", "-c", "echo hi; exit 3"}, code: 3, stdout: "hi\n"},
			{name: "immediate-exit", args: []string{"true"}},
			{name: "stderr-separate", args: []string{"sh", "-c", "echo out; echo err >&2"}, stdout: "out\n", stderrHas: "err"},
			{name: "stdin-piped", args: []string{"sh", "-c", "cat; echo done"}, stdin: "line one\nline two\n", stdout: "line one\nline two\ndone\n"},
			{name: "big-output-drained", args: []string{"sh", "-c", "seq 1 20000; exit 1"}, code: 1, stdout: seq(20000)},
			{name: "env-and-cwd", args: []string{"sh", "-c", "cd /tmp && pwd && echo $PATH"}, stdout: "/tmp\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"},
		}
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Cleanup(func() { s.assertClean(t) })
				ctx := ctrd.CtxFor(t, 90*time.Second)
				id := fmt.Sprintf("run%d", i)
				cmd := s.d.CtrCommand(ctx, s.runArgs(append([]string{"--rm", s.img, id}, tc.args...)...)...)
				var stdout, stderr strings.Builder
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				if tc.stdin != "" {
					cmd.Stdin = strings.NewReader(tc.stdin)
				}
				err := cmd.Run()
				if code := ctrd.ExitCode(err); code != tc.code || stdout.String() != tc.stdout {
					t.Errorf("exit %d (%v), stdout %q\nwant exit %d, stdout %q\nstderr: %s", code, err, short(stdout.String()), tc.code, short(tc.stdout), stderr.String())
				}
				if !strings.Contains(stderr.String(), tc.stderrHas) {
					t.Errorf("stderr %q does not contain %q", stderr.String(), tc.stderrHas)
				}
			})
		}
	})

	t.Run("tty", func(t *testing.T) {
		t.Cleanup(func() { s.assertClean(t) })
		ctx := ctrd.CtxFor(t, 90*time.Second)
		// ctr sends the terminal's size right after Start: wait for it.
		script := `until [ -n "$(stty size 2>/dev/null | grep -v '^0 0$')" ]; do sleep 0.05; done; stty size; test -t 0 && echo is-a-tty; read line; echo "got:$line"; exit 4`
		term := ctrd.OpenPty(t, 40, 100)
		cmd := s.d.CtrCommand(ctx, s.runArgs("--rm", "-t", s.img, "tty1", "sh", "-c", script)...)
		term.Attach(cmd)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		term.CloseSlave()
		out := term.Reader()
		if _, err := out.WaitFor("is-a-tty"); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("terminal: %v", err)
		}
		if _, err := term.Master.Write([]byte("typed\r")); err != nil {
			t.Fatal(err)
		}
		all, _ := out.WaitFor("got:typed")
		err := cmd.Wait()
		if code := ctrd.ExitCode(err); code != 4 {
			t.Errorf("ctr run -t: exit %d (%v), want 4; terminal: %q", code, err, all)
		}
		if !strings.Contains(all, "40 100") {
			t.Errorf("the terminal size did not reach the container: %q", all)
		}
	})

	t.Run("exec-ps-metrics-pause", func(t *testing.T) {
		t.Cleanup(func() { s.assertClean(t) })
		ctx := ctrd.CtxFor(t, 120*time.Second)
		id := "long1"
		s.startDetached(t, id, "sleep", "1000")

		cases := []struct {
			name      string
			args      []string
			code      int
			stdout    string
			stderrHas string
		}{
			{name: "exit-code-and-streams", args: []string{"sh", "-c", "echo out; echo err >&2; exit 5"}, code: 5, stdout: "out\n", stderrHas: "err"},
			{name: "sees-init", args: []string{"sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '"}, stdout: "sleep 1000 "},
			{name: "missing-program", args: []string{"/no/such/program"}, code: -2},
		}
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				cmd := s.d.CtrCommand(ctx, append([]string{"task", "exec", "--exec-id", fmt.Sprintf("e%d", i), id}, tc.args...)...)
				var stdout, stderr strings.Builder
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				err := cmd.Run()
				code := ctrd.ExitCode(err)
				if tc.code == -2 {
					if err == nil || !strings.Contains(stderr.String(), "/no/such/program") {
						t.Errorf("exec of a missing program: %v, stderr %q", err, stderr.String())
					}
					return
				}
				if code != tc.code || stdout.String() != tc.stdout || !strings.Contains(stderr.String(), tc.stderrHas) {
					t.Errorf("exit %d (%v), stdout %q, stderr %q; want %d, %q, %q", code, err, stdout.String(), stderr.String(), tc.code, tc.stdout, tc.stderrHas)
				}
			})
		}

		out, err := s.d.CtrStdout(ctx, "task", "ps", id)
		if err != nil || len(strings.Fields(out)) < 3 {
			t.Errorf("ctr task ps: %v\n%s", err, out)
		}
		t.Logf("ctr task ps:\n%s", out)

		out, err = s.d.CtrStdout(ctx, "task", "metrics", "--format", "json", id)
		if err != nil {
			t.Errorf("ctr task metrics: %v", err)
		} else {
			var m struct {
				Pids *struct{ Current uint64 } `json:"pids"`
				CPU  *struct {
					UsageUsec uint64 `json:"usage_usec"`
				} `json:"cpu"`
			}
			if err := json.Unmarshal([]byte(out), &m); err != nil || m.Pids == nil || m.Pids.Current < 1 {
				t.Logf("metrics (json): %s", out)
				if err != nil {
					t.Errorf("ctr task metrics --format json: %v", err)
				} else if m.Pids == nil {
					// pids is a cgroup v2 controller: report which one is missing.
					t.Logf("no pids statistics: this host's cgroup v2 has no pids controller")
				}
			}
		}
		if out, err := s.d.CtrStdout(ctx, "task", "metrics", id); err != nil {
			t.Errorf("ctr task metrics: %v", err)
		} else {
			t.Logf("ctr task metrics:\n%s", out)
		}

		for _, step := range []struct{ cmd, want string }{{"pause", "PAUSED"}, {"resume", "RUNNING"}} {
			if out, err := s.d.Ctr(ctx, "task", step.cmd, id); err != nil {
				t.Fatalf("ctr task %s: %v: %s", step.cmd, err, out)
			}
			if st := s.d.TaskStatus(t, id); st != step.want {
				t.Errorf("after ctr task %s the task is %s, want %s", step.cmd, st, step.want)
			}
		}
		// The container is still alive after resume.
		if out, err := s.d.CtrStdout(ctx, "task", "exec", "--exec-id", "after-resume", id, "echo", "alive"); err != nil || out != "alive\n" {
			t.Errorf("exec after resume: %v %q", err, out)
		}
	})

	t.Run("kill", func(t *testing.T) {
		cases := []struct {
			name   string
			signal string
			code   int
		}{
			{"SIGTERM", "SIGTERM", 42},
			{"SIGKILL", "SIGKILL", 137},
			{"SIGKILL-all", "SIGKILL", 137},
		}
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Cleanup(func() { s.assertClean(t) })
				ctx := ctrd.CtxFor(t, 90*time.Second)
				id := fmt.Sprintf("kill%d", i)
				script := `trap "echo terminated; exit 42" TERM; echo ready; while :; do sleep 0.1; done`
				cmd := s.d.CtrCommand(ctx, s.runArgs("--rm", s.img, id, "sh", "-c", script)...)
				r := ctrd.StartUntilReady(t, cmd)
				s.d.WaitRunning(t, ctx, id)
				kill := []string{"task", "kill", "-s", tc.signal}
				if strings.HasSuffix(tc.name, "-all") {
					kill = append(kill, "--all")
				}
				if out, err := s.d.Ctr(ctx, append(kill, id)...); err != nil {
					t.Fatalf("ctr task kill: %v: %s", err, out)
				}
				rest, _ := io.ReadAll(r)
				err := cmd.Wait()
				if code := ctrd.ExitCode(err); code != tc.code {
					t.Errorf("after %s: exit %d (%v), want %d; output %q", tc.signal, code, err, tc.code, rest)
				}
			})
		}
	})

	t.Run("kernel", func(t *testing.T) {
		for _, variant := range []string{"lean", "net"} {
			t.Run(variant, func(t *testing.T) {
				t.Cleanup(func() { s.assertClean(t) })
				blob := filepath.Join(ctrd.Deps(), "kernels", variant, "libkrunfw.so.5")
				ctrd.Require(t, blob)
				want := sha256File(t, blob)
				id := "k-" + variant
				s.startDetached(t, id, "--annotation", "io.boxlite.kernel="+variant, "sleep", "1000")
				rec := s.record(t, id)
				mapped := mappedKrunfw(t, rec.VMMPid)
				if len(mapped) != 1 {
					t.Fatalf("VMM %d maps %d libkrunfw files (%v), want exactly one", rec.VMMPid, len(mapped), mapped)
				}
				if got := sha256File(t, mapped[0]); got != want {
					t.Errorf("VMM %d maps %s (sha256 %s), which is not the %s kernel %s (sha256 %s)", rec.VMMPid, mapped[0], got[:12], variant, blob, want[:12])
				}
			})
		}
		t.Run("net-on-lean-only-build", func(t *testing.T) {
			t.Cleanup(func() { s.assertClean(t) })
			leanOnly := buildLeanOnlyShim(t)
			ctx := ctrd.CtxFor(t, 60*time.Second)
			args := []string{"run", "--rm", "--runtime", leanOnly, "--runtime-config-path", s.cfg, "--annotation", "io.boxlite.kernel=net", s.img, "k-leanonly", "true"}
			out, err := s.d.Ctr(ctx, args...)
			if err == nil || !strings.Contains(out, `"net" is not available`) || !strings.Contains(out, "make KERNELS=") || !strings.Contains(out, "[kernel.paths]") {
				t.Errorf("net on a lean-only build: want an error saying how to get net; got %v: %s", err, out)
			}
			t.Logf("ctr: %s", strings.TrimSpace(out))
			s.removeContainer(t, "k-leanonly")

			// That binary has no boxlite-agent beside it: lean boots
			// nothing and says what is missing.
			args = []string{"run", "--rm", "--runtime", leanOnly, "--runtime-config-path", s.cfg, s.img, "k-noagent", "true"}
			out, err = s.d.Ctr(ctx, args...)
			if err == nil || !strings.Contains(out, "boxlite-agent") || !strings.Contains(out, "make agent") {
				t.Errorf("a shim without boxlite-agent beside it: want an error naming it; got %v: %s", err, out)
			}
			t.Logf("ctr: %s", strings.TrimSpace(out))
			s.removeContainer(t, "k-noagent")
		})
	})

	// Runs the shim refuses end in a clear error and leave nothing behind.
	t.Run("refused", func(t *testing.T) {
		cases := []struct {
			name string
			args []string
			want []string
		}{
			{name: "kernel-bogus", args: []string{"--annotation", "io.boxlite.kernel=bogus", s.img, "r-bogus", "true"}, want: []string{`"bogus"`, "lean, net"}},
			{name: "annotation-not-enabled", args: []string{"--annotation", "io.boxlite.cpus=2", s.img, "r-cpus", "true"}, want: []string{"io.boxlite.cpus", "not enabled", "[annotations] enabled"}},
			{name: "unknown-annotation", args: []string{"--annotation", "io.boxlite.gpu=1", s.img, "r-gpu", "true"}, want: []string{"io.boxlite.gpu", "not one this shim understands"}},
			{name: "missing-program", args: []string{s.img, "r-noprog", "/no/such/program"}, want: []string{"/no/such/program"}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Cleanup(func() { s.assertClean(t) })
				ctx := ctrd.CtxFor(t, 60*time.Second)
				id := tc.args[len(tc.args)-2]
				if tc.name == "missing-program" {
					id = tc.args[1]
				}
				t.Cleanup(func() { s.removeContainer(t, id) })
				out, err := s.d.Ctr(ctx, s.runArgs(append([]string{"--rm"}, tc.args...)...)...)
				if err == nil {
					t.Fatalf("ctr run succeeded: %s", out)
				}
				for _, w := range tc.want {
					if !strings.Contains(out, w) {
						t.Errorf("error does not say %q: %s", w, out)
					}
				}
				t.Logf("ctr: %s", strings.TrimSpace(out))
			})
		}
	})

	t.Run("exec-tty", func(t *testing.T) {
		t.Cleanup(func() { s.assertClean(t) })
		ctx := ctrd.CtxFor(t, 90*time.Second)
		id := "exectty"
		s.startDetached(t, id, "sleep", "1000")
		term := ctrd.OpenPty(t, 30, 90)
		script := `until [ -n "$(stty size 2>/dev/null | grep -v '^0 0$')" ]; do sleep 0.05; done; stty size; exit 6`
		cmd := s.d.CtrCommand(ctx, "task", "exec", "-t", "--exec-id", "t1", id, "sh", "-c", script)
		term.Attach(cmd)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		term.CloseSlave()
		out := term.Reader()
		err := cmd.Wait()
		all, _ := out.WaitFor("\x00never") // everything until the terminal closes
		if code := ctrd.ExitCode(err); code != 6 || !strings.Contains(all, "30 90") {
			t.Errorf("ctr task exec -t: exit %d (%v), want 6 and the size 30 90; terminal %q", code, err, all)
		}
	})

	// The VM is configured from the config and the sandbox's annotations:
	// the test double's call log shows what the VMM asked libkrun for.
	t.Run("vm-config", func(t *testing.T) {
		t.Cleanup(func() { s.assertClean(t) })
		cfg := s.writeConfig(t, "all-annotations.toml", "[annotations]\nenabled = [\"io.boxlite.*\"]\n")
		id := "vmcfg"
		ctx := ctrd.CtxFor(t, 60*time.Second)
		t.Cleanup(func() { s.removeContainer(t, id) })
		args := []string{"run", "-d", "--runtime", runtimeName, "--runtime-config-path", cfg,
			"--annotation", "io.boxlite.cpus=2", "--annotation", "io.boxlite.memory_mib=256", s.img, id, "sleep", "1000"}
		if out, err := s.d.Ctr(ctx, args...); err != nil {
			t.Fatalf("ctr run: %v: %s", err, out)
		}
		rec := s.record(t, id)
		b, err := os.ReadFile(filepath.Join(rec.Dir, "vmm", "krun-calls.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		calls := map[string]map[string]any{}
		var ports []string
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var c map[string]any
			if err := json.Unmarshal([]byte(l), &c); err != nil {
				t.Fatalf("call log line %q: %v", l, err)
			}
			calls[fmt.Sprint(c["call"])] = c
			if c["call"] == "krun_add_vsock_port2" {
				ports = append(ports, fmt.Sprintf("%v/%v", c["port"], c["listen"]))
			}
		}
		// The agent's port, and the ready port the agent connects to.
		if got := strings.Join(ports, " "); got != "1024/true 1025/false" {
			t.Errorf("vsock ports %s, want 1024/true 1025/false", got)
		}
		for _, c := range []struct{ call, key, want string }{
			{"krun_set_vm_config", "vcpus", "2"},
			{"krun_set_vm_config", "ram_mib", "256"},
			{"krun_set_root", "root", "/root"}, // inside the VMM's jail (rec.Dir)
			{"krun_set_exec", "exec_path", "/.boxlite/boxlite-agent"},
		} {
			if got := fmt.Sprint(calls[c.call][c.key]); got != c.want {
				t.Errorf("%s %s = %s, want %s", c.call, c.key, got, c.want)
			}
		}
	})

	t.Run("update-checkpoint", func(t *testing.T) {
		t.Cleanup(func() { s.assertClean(t) })
		ctx := ctrd.CtxFor(t, 60*time.Second)
		id := "upd1"
		s.startDetached(t, id, "sleep", "1000")
		conn, err := grpc.NewClient("unix://"+s.d.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		limit := int64(64)
		res, err := typeurl.MarshalAnyToProto(&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &limit}})
		if err != nil {
			t.Fatal(err)
		}
		ctx = metadata.AppendToOutgoingContext(ctx, "containerd-namespace", "boxlite-test")
		_, err = tasks.NewTasksClient(conn).Update(ctx, &tasks.UpdateTaskRequest{ContainerID: id, Resources: res})
		if hostHasController("pids") {
			if err != nil {
				t.Errorf("update pids limit: %v", err)
			}
		} else if err == nil || !strings.Contains(err.Error(), "pids") || !strings.Contains(err.Error(), "controller") {
			t.Errorf("update pids limit where the guest has no pids controller: want a clear error, got %v", err)
		} else {
			t.Logf("update refused as expected: %v", err)
		}
		out, err := s.d.Ctr(ctrd.CtxFor(t, 60*time.Second), "task", "checkpoint", id)
		if err == nil || !strings.Contains(out, "not supported") {
			t.Errorf("ctr task checkpoint: want a clear not-supported error, got %v: %s", err, out)
		}
	})

	t.Run("event-order", func(t *testing.T) {
		t.Cleanup(func() { s.assertClean(t) })
		ctx := ctrd.CtxFor(t, 90*time.Second)
		id := "events1"
		events := s.d.CtrCommand(ctx, "events")
		var evOut ctrd.SyncBuffer
		events.Stdout = &evOut
		if err := events.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { events.Process.Kill(); events.Wait() }()
		// ctr events subscribes asynchronously: run a marker until it shows.
		for i := 0; !strings.Contains(evOut.String(), "/tasks/"); i++ {
			if ctx.Err() != nil {
				t.Fatal("ctr events printed nothing")
			}
			s.d.Ctr(ctx, s.runArgs("--rm", s.img, fmt.Sprintf("marker%d", i), "true")...)
		}
		s.startDetached(t, id, "sleep", "1000")
		if out, err := s.d.Ctr(ctx, "task", "exec", "--exec-id", "x1", id, "true"); err != nil {
			t.Fatalf("exec: %v: %s", err, out)
		}
		if out, err := s.d.Ctr(ctx, "task", "kill", "-s", "SIGKILL", id); err != nil {
			t.Fatalf("kill: %v: %s", err, out)
		}
		s.removeContainer(t, id)
		var got []string
		for {
			got = ctrd.TaskTopics(evOut.String(), id)
			if len(got) > 0 && got[len(got)-1] == "/tasks/delete" {
				break
			}
			if ctx.Err() != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		want := []string{"/tasks/create", "/tasks/start", "/tasks/exec-added", "/tasks/exec-started", "/tasks/exit x1", "/tasks/exit " + id, "/tasks/delete"}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("task events of %s:\n got %q\nwant %q\nctr events:\n%s", id, got, want, evOut.String())
		}
	})

	t.Run("vmm-dies", func(t *testing.T) {
		t.Cleanup(func() { s.assertClean(t) })
		ctx := ctrd.CtxFor(t, 90*time.Second)
		id := "vmmdies"
		cmd := s.d.CtrCommand(ctx, s.runArgs("--rm", s.img, id, "sh", "-c", "echo ready; exec sleep 1000")...)
		r := ctrd.StartUntilReady(t, cmd)
		// The container printing "ready" may come before Start has
		// returned: kill the VMM only once containerd has the task running.
		s.d.WaitRunning(t, ctx, id)
		rec := s.record(t, id)
		if err := syscallKill(rec.VMMPid); err != nil {
			t.Fatal(err)
		}
		_, _ = io.ReadAll(r)
		if code := ctrd.ExitCode(cmd.Wait()); code != 255 {
			t.Errorf("a task whose VMM died: exit %d, want 255 (sandbox failure)", code)
		}
	})

	t.Run("shim-killed", func(t *testing.T) {
		t.Cleanup(func() { s.assertClean(t) })
		ctx := ctrd.CtxFor(t, 90*time.Second)
		id := "shimkill"
		s.startDetached(t, id, "sleep", "1000")
		rec := s.record(t, id)
		recBytes, err := os.ReadFile(filepath.Join(s.d.Bundle(id), sandbox.RecordName))
		if err != nil {
			t.Fatal(err)
		}
		shimPid := findShim(t, id)
		if err := syscallKill(shimPid); err != nil {
			t.Fatal(err)
		}
		// containerd notices, runs `shim delete` in the bundle, then removes
		// the bundle.
		for {
			if _, err := os.Stat(s.d.Bundle(id)); os.IsNotExist(err) {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("the bundle of task %s is still there after its shim was killed", id)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(rec.VMMPid))); err == nil && vmm.IsVMM(rec.VMMPid) {
			t.Errorf("VMM %d still runs after containerd cleaned up the dead shim", rec.VMMPid)
		}
		// `shim delete` is safe to run again, with the same state record.
		bin := filepath.Join(ctrd.BinDir(t), "containerd-shim-boxlite-v2")
		bundle := filepath.Join(t.TempDir(), id)
		if err := os.MkdirAll(bundle, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bundle, sandbox.RecordName), recBytes, 0o600); err != nil {
			t.Fatal(err)
		}
		del := exec.Command(bin, "-namespace", "boxlite-test", "-id", id, "-bundle", bundle, "delete")
		del.Dir = bundle
		if out, err := del.CombinedOutput(); err != nil {
			t.Errorf("second shim delete: %v: %s", err, out)
		}
		if _, err := os.Stat(filepath.Join(bundle, sandbox.RecordName)); !os.IsNotExist(err) {
			t.Errorf("the second delete left the state record: %v", err)
		}
	})

	// OOM kills and a guest kernel's `uname -r` need a guest kernel: the
	// guest suite (test/guest) tests them on the emulated engine.
}

func syscallKill(pid int) error { return unix.Kill(pid, unix.SIGKILL) }

func seq(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "%d\n", i)
	}
	return b.String()
}

func short(s string) string {
	if len(s) > 200 {
		return s[:100] + "..." + s[len(s)-100:]
	}
	return s
}

// startDetached runs ctr run -d and removes the container when the test ends.
func (s *suite) startDetached(t *testing.T, id string, args ...string) {
	t.Helper()
	ctx := ctrd.CtxFor(t, 60*time.Second)
	var opts []string
	for len(args) > 1 && strings.HasPrefix(args[0], "--") {
		opts = append(opts, args[0], args[1])
		args = args[2:]
	}
	full := s.runArgs(append(append([]string{"-d"}, opts...), append([]string{s.img, id}, args...)...)...)
	t.Cleanup(func() { s.removeContainer(t, id) })
	if out, err := s.d.Ctr(ctx, full...); err != nil {
		t.Fatalf("ctr run -d: %v: %s", err, out)
	}
}

// record reads the sandbox's state record the shim keeps in the bundle.
func (s *suite) record(t *testing.T, id string) sandbox.Record {
	t.Helper()
	return sandboxtest.Record(t, s.d.Bundle(id))
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// mappedKrunfw lists the distinct files named libkrunfw* (or in a kernel
// cache) that process pid has mapped.
func mappedKrunfw(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatalf("maps of VMM %d: %v", pid, err)
	}
	seen := map[string]bool{}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 {
			continue
		}
		p := f[5]
		if strings.Contains(p, "krunfw") && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// findShim returns the PID of the shim serving task id.
func findShim(t *testing.T, id string) int {
	t.Helper()
	pid := servingShim(id)
	if pid == 0 {
		t.Fatalf("no shim process for task %s", id)
	}
	return pid
}

// servingShim is the PID of the shim serving task id, not the short-lived
// `start` or `delete` processes of the bootstrap protocol; 0 if none.
func servingShim(id string) int {
	for _, p := range ctrd.OurProcesses() {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.Pid))
		args := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
		if filepath.Base(args[0]) != "containerd-shim-boxlite-v2" {
			continue
		}
		if last := args[len(args)-1]; last == "start" || last == "delete" {
			continue
		}
		for i := range args[:len(args)-1] {
			if args[i] == "-id" && args[i+1] == id {
				return p.Pid
			}
		}
	}
	return 0
}

// hostHasController reports whether the host's cgroup v2 hierarchy offers
// controller name (the agent's cgroups are the host's under the double).
func hostHasController(name string) bool {
	root := ctrd.Cgroup2Mount()
	if root == "" {
		return false
	}
	b, _ := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	for _, c := range strings.Fields(string(b)) {
		if c == name {
			return true
		}
	}
	return false
}

// buildLeanOnlyShim builds a shim embedding only the lean kernel.
func buildLeanOnlyShim(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "containerd-shim-boxlite-v2")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", "kernel_lean", "-o", out, "./cmd/containerd-shim-boxlite-v2")
	cmd.Dir = ctrd.RepoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building a lean-only shim (needs kernel/blobs/lean from `make`): %v\n%s", err, b)
	}
	return out
}
