package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/boxlite/boxlite-shim/test/ctrd"
)

// runtimeName is how ctr names the shim.
const runtimeName = "io.boxlite.v2"

// suite is one private containerd with the busybox image and a shim
// configuration that runs sandboxes through the libkrun test double.
type suite struct {
	d        *ctrd.Daemon
	img      string
	dir      string // per-suite directory: config, state, cache
	cfg      string // the shim's config file
	stateDir string
	cacheDir string
}

func newSuite(t *testing.T) *suite {
	t.Helper()
	d := ctrd.Start(t, ctrd.Options{})
	bin := ctrd.BinDir(t)
	double := filepath.Join(bin, "test", "libkrun.so.1")
	ctrd.Require(t, double, filepath.Join(bin, "boxlite-vmm"), filepath.Join(bin, "boxlite-agent"))
	dir, err := os.MkdirTemp("", "bxs") // short: agent sockets live under it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &suite{d: d, dir: dir, stateDir: filepath.Join(dir, "st"), cacheDir: filepath.Join(dir, "cache")}
	s.cfg = s.writeConfig(t, "config.toml", "")
	s.img = ImportBusybox(t, d)
	return s
}

// writeConfig writes a shim configuration using the test double, the
// suite's state and cache directories, plus extra TOML.
func (s *suite) writeConfig(t *testing.T, name, extra string) string {
	t.Helper()
	double, err := filepath.Abs(filepath.Join(ctrd.BinDir(t), "test", "libkrun.so.1"))
	if err != nil {
		t.Fatal(err)
	}
	body := ctrd.ShimConfig(double, s.stateDir, s.cacheDir) + extra
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

// assertClean checks that nothing of ours remains: no shim, VMM or agent
// process, no mount or socket under containerd's state, the suite's state
// directory, and no task in containerd.
func (s *suite) assertClean(t *testing.T) {
	t.Helper()
	ctrd.AssertNoLeftovers(t, s.d.State, s.stateDir, filepath.Join(s.d.Root, "io.containerd.runtime.v2.task"))
	ctrd.AssertNoSandboxState(t, s.stateDir)
	if left := ctrd.CgroupsLeft("boxlite-"); len(left) > 0 {
		t.Errorf("cgroups left on the host: %v", left)
	}
	ctx := ctrd.CtxFor(t, 20*time.Second)
	out, err := s.d.CtrStdout(ctx, "task", "ls", "-q")
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("tasks left in containerd: %v %q", err, out)
	}
}

// removeContainer deletes a container record (ctr run without --rm).
func (s *suite) removeContainer(t *testing.T, id string) {
	t.Helper()
	s.d.RemoveContainer(t, ctrd.CtxFor(t, 30*time.Second), id)
}
