package guest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/boxlite/boxlite-shim/runtime/sandbox"
	"github.com/boxlite/boxlite-shim/test/ctrd"
	"github.com/boxlite/boxlite-shim/test/ocitest"
	"github.com/boxlite/boxlite-shim/test/sandboxtest"
)

// runtimeName is how ctr names the shim.
const runtimeName = "io.boxlite.v2"

// suite is one private containerd with the busybox and iptables test images
// and a shim configuration whose sandboxes run on the emulated engine.
type suite struct {
	d        *ctrd.Daemon
	img      string // busybox
	iptImg   string // busybox + Debian's legacy iptables
	dir      string // per-suite directory: configs, state, cache
	cfg      string // the shim's config file
	stateDir string
	cacheDir string
	engine   string // the engine's libkrun.so.1
}

func newSuite(t *testing.T) *suite {
	t.Helper()
	engine := engineLib(t)
	d := ctrd.Start(t, ctrd.Options{})
	bin := ctrd.BinDir(t)
	ctrd.Require(t, filepath.Join(bin, "boxlite-vmm"), filepath.Join(bin, "boxlite-agent"))
	dir, err := os.MkdirTemp("", "bxgs") // short: agent sockets live under it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &suite{d: d, dir: dir, stateDir: filepath.Join(dir, "st"), cacheDir: filepath.Join(dir, "cache"), engine: engine}
	s.cfg = s.writeConfig(t, "config.toml", "")
	s.img = s.importImage(t, "busybox", ocitest.ImageName, func(busybox, out string) error {
		return ocitest.BusyboxImage(busybox, out, ocitest.ImageName)
	})
	s.iptImg = s.importImage(t, "iptables", ocitest.IptablesImageName, func(busybox, out string) error {
		return ocitest.IptablesImage(busybox, ctrd.Deps(), out)
	})
	return s
}

// importImage builds a test image with mk and imports it into the daemon.
func (s *suite) importImage(t *testing.T, what, name string, mk func(busybox, out string) error) string {
	t.Helper()
	busybox := filepath.Join(ctrd.Deps(), "busybox", "busybox")
	ctrd.Require(t, busybox)
	archive := filepath.Join(t.TempDir(), what+".tar")
	if err := mk(busybox, archive); err != nil {
		t.Fatalf("building the %s test image: %v", what, err)
	}
	if out, err := s.d.Ctr(ctrd.CtxFor(t, 90*time.Second), "image", "import", archive); err != nil {
		t.Fatalf("ctr image import: %v\n%s", err, out)
	}
	return name
}

// writeConfig writes a shim configuration naming the engine, the suite's
// state and cache directories, plus extra TOML.
func (s *suite) writeConfig(t *testing.T, name, extra string) string {
	t.Helper()
	body := ctrd.ShimConfig(s.engine, s.stateDir, s.cacheDir) + extra
	p := filepath.Join(s.dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// runArgs are the ctr run arguments for the shim with the suite's config.
func (s *suite) runArgs(extra ...string) []string {
	return append([]string{"run", "--runtime", runtimeName, "--runtime-config-path", s.cfg}, extra...)
}

// run is `ctr run --rm` of cmd in img, with its stdout, stderr and exit
// status.
func (s *suite) run(t *testing.T, opts []string, img, id string, cmd ...string) (stdout, stderr string, code int) {
	t.Helper()
	c := s.d.CtrCommand(ctrd.CtxFor(t, 2*time.Minute), s.runArgs(append(append([]string{"--rm"}, opts...), append([]string{img, id}, cmd...)...)...)...)
	var o, e strings.Builder
	c.Stdout, c.Stderr = &o, &e
	err := c.Run()
	return o.String(), e.String(), ctrd.ExitCode(err)
}

// startDetached runs ctr run -d and removes the container when the test ends.
func (s *suite) startDetached(t *testing.T, opts []string, img, id string, cmd ...string) {
	t.Helper()
	full := s.runArgs(append(append([]string{"-d"}, opts...), append([]string{img, id}, cmd...)...)...)
	t.Cleanup(func() { s.removeContainer(t, id) })
	if out, err := s.d.Ctr(ctrd.CtxFor(t, 2*time.Minute), full...); err != nil {
		t.Fatalf("ctr run -d: %v: %s", err, out)
	}
}

// removeContainer deletes a container record (ctr run without --rm).
func (s *suite) removeContainer(t *testing.T, id string) {
	t.Helper()
	s.d.RemoveContainer(t, ctrd.CtxFor(t, time.Minute), id)
}

// exec is `ctr task exec` in container id, with its stdout and exit status
// (stderr goes into the error).
func (s *suite) exec(t *testing.T, id, execID string, cmd ...string) (string, error) {
	t.Helper()
	return s.d.CtrStdout(ctrd.CtxFor(t, time.Minute), append([]string{"task", "exec", "--exec-id", execID, id}, cmd...)...)
}

// record reads the sandbox's state record the shim keeps in the bundle.
func (s *suite) record(t *testing.T, id string) sandbox.Record {
	t.Helper()
	return sandboxtest.Record(t, s.d.Bundle(id))
}

// daemonLog is what containerd has logged so far (the shims' logs too).
func (s *suite) daemonLog(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(s.d.Log)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitLog waits until containerd's log has a line with every one of want,
// and returns that line.
func (s *suite) waitLog(t *testing.T, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, l := range strings.Split(s.daemonLog(t), "\n") {
			all := true
			for _, w := range want {
				all = all && strings.Contains(l, w)
			}
			if all {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd's log has no line with all of %q", want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// assertClean checks that nothing of ours remains: no shim, VMM, agent or
// engine process, no mount or socket under containerd's state or the
// suite's state directory, no sandbox state, no host cgroup (the engine's
// guests have their cgroups in the guest), and no task in containerd.
func (s *suite) assertClean(t *testing.T) {
	t.Helper()
	ctrd.AssertNoLeftovers(t, s.d.State, s.stateDir, filepath.Join(s.d.Root, "io.containerd.runtime.v2.task"))
	if p := engineProcesses(); len(p) > 0 {
		t.Errorf("engine processes left: %v", p)
	}
	ctrd.AssertNoSandboxState(t, s.stateDir)
	if left := ctrd.CgroupsLeft("boxlite-"); len(left) > 0 {
		t.Errorf("cgroups on the host (none are made for the engine's guests): %v", left)
	}
	out, err := s.d.CtrStdout(ctrd.CtxFor(t, 20*time.Second), "task", "ls", "-q")
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("tasks left in containerd: %v %q", err, out)
	}
}

// kernelVersions are the versions `kernels` reports for each variant, as
// this shim binary embeds them.
func kernelVersions(t *testing.T, cfg string) map[string]string {
	t.Helper()
	out, err := exec.Command(filepath.Join(ctrd.BinDir(t), "containerd-shim-boxlite-v2"), "kernels", "-config", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("kernels: %v\n%s", err, out)
	}
	first, _, _ := strings.Cut(string(out), "\n\n")
	v := map[string]string{}
	for _, line := range strings.Split(first, "\n") {
		// VARIANT STATE SOURCE SHA256 VERSION IPTABLES ...
		if f := strings.Fields(line); len(f) >= 5 && f[0] != "VARIANT" {
			v[f[0]] = f[4]
		}
	}
	return v
}

// events runs `ctr events` until the test ends; what it printed is in the
// buffer. It waits until the subscription is up (a marker container's
// events show).
func (s *suite) events(t *testing.T) *ctrd.SyncBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ev := s.d.CtrCommand(ctx, "events")
	var out ctrd.SyncBuffer
	ev.Stdout = &out
	if err := ev.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); ev.Wait() })
	// A container the shim refuses at once still makes /containers/ events.
	for i := 0; !strings.Contains(out.String(), "/containers/create"); i++ {
		if i > 100 {
			t.Fatal("ctr events printed nothing")
		}
		id := fmt.Sprintf("evmark%d", i)
		_, _ = s.d.Ctr(ctrd.CtxFor(t, 30*time.Second), "container", "create", s.img, id, "true")
		_, _ = s.d.Ctr(ctrd.CtxFor(t, 30*time.Second), "container", "delete", id)
		time.Sleep(50 * time.Millisecond)
	}
	return &out
}

// waitTopics waits until container id's task events end with last, and
// returns them all.
func waitTopics(t *testing.T, ev *ctrd.SyncBuffer, id, last string) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := ctrd.TaskTopics(ev.String(), id)
		for _, g := range got {
			if g == last {
				return got
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s event for %s: %q", last, id, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
