package e2e

import (
	"context"
	"fmt"
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
	body := fmt.Sprintf("libkrun_path = %q\nstate_dir = %q\ncache_dir = %q\n%s", double, s.stateDir, s.cacheDir, extra)
	p := filepath.Join(s.dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// ctx is a context for one step of a test, bounded so that a hang fails.
func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
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
	if ents, err := os.ReadDir(s.stateDir); err == nil {
		var left []string
		for _, e := range ents {
			sub, _ := os.ReadDir(filepath.Join(s.stateDir, e.Name()))
			for _, x := range sub {
				left = append(left, filepath.Join(e.Name(), x.Name()))
			}
		}
		if len(left) > 0 {
			t.Errorf("sandbox state left in %s: %v", s.stateDir, left)
		}
	}
	if left := ctrd.CgroupsLeft("boxlite-"); len(left) > 0 {
		t.Errorf("cgroups left on the host: %v", left)
	}
	ctx := ctxFor(t, 20*time.Second)
	out, err := s.d.CtrStdout(ctx, "task", "ls", "-q")
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("tasks left in containerd: %v %q", err, out)
	}
}

// removeContainer deletes a container record (ctr run without --rm).
func (s *suite) removeContainer(t *testing.T, id string) {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	_, _ = s.d.Ctr(ctx, "task", "kill", "-s", "SIGKILL", id)
	_, _ = s.d.Ctr(ctx, "task", "delete", "-f", id)
	if out, err := s.d.Ctr(ctx, "container", "delete", id); err != nil && !strings.Contains(out, "not found") {
		t.Errorf("ctr container delete %s: %v: %s", id, err, out)
	}
}
