package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxlite/boxlite-shim/test/ctrd"
)

// TestBadInputs gives the shim bad configuration and annotations through the
// real ctr: each run must fail with an error that names the problem and what
// to do, and leave nothing behind (no process, mount, socket, state
// directory, cgroup or task).
func TestBadInputs(t *testing.T) {
	s := newSuite(t)
	empty := filepath.Join(s.dir, "empty-kernel.so")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	huge := strings.Repeat("x", 64<<10)
	cases := []struct {
		name   string
		config string   // extra shim config TOML ("" = the suite's)
		args   []string // ctr run options before the image
		want   []string // all in ctr's output
	}{
		{name: "libkrun-missing", config: `libkrun_path = "/nonexistent/libkrun.so.1"`,
			want: []string{"libkrun is not available", "/nonexistent/libkrun.so.1", "libkrun_path"}},
		{name: "config-unknown-key", config: "[vm]\ncpu = 2",
			want: []string{`unknown key "vm.cpu"`}},
		{name: "config-invalid-value", config: "[vm]\nmemory_mib = 1",
			want: []string{"vm.memory_mib", "1"}},
		{name: "kernel-path-missing", config: "[kernel.paths]\nlean = \"/nonexistent/libkrunfw.so.5\"",
			want: []string{"[kernel.paths] lean", "/nonexistent/libkrunfw.so.5"}},
		{name: "kernel-path-empty-file", config: "[kernel.paths]\nlean = \"" + empty + "\"",
			want: []string{"[kernel.paths] lean", empty}},
		{name: "annotation-huge-value", args: []string{"--annotation", "io.boxlite.kernel=" + huge},
			want: []string{"io.boxlite.kernel", "longer than the 256 accepted"}},
		{name: "annotation-huge-key", args: []string{"--annotation", "io.boxlite." + huge + "=1"},
			want: []string{"not one this shim understands"}},
		{name: "annotation-empty-kernel", args: []string{"--annotation", "io.boxlite.kernel="},
			want: []string{"io.boxlite.kernel", "lean, net"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Cleanup(func() { s.assertClean(t) })
			cfg := s.cfg
			switch {
			case strings.HasPrefix(tc.config, "libkrun_path"):
				// Replaces the suite's libkrun_path (the test double).
				cfg = filepath.Join(s.dir, fmt.Sprintf("bad%d.toml", i))
				body := fmt.Sprintf("%s\nstate_dir = %q\ncache_dir = %q\n", tc.config, s.stateDir, s.cacheDir)
				if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			case tc.config != "":
				// The suite's keys first, then the case's: a TOML table
				// opened by the case does not swallow them.
				cfg = s.writeConfig(t, fmt.Sprintf("bad%d.toml", i), tc.config)
			}
			id := fmt.Sprintf("bad%d", i)
			args := []string{"run", "--rm", "--runtime", runtimeName, "--runtime-config-path", cfg}
			args = append(append(args, tc.args...), s.img, id, "true")
			out, err := s.d.Ctr(ctrd.CtxFor(t, 60*time.Second), args...)
			if err == nil {
				t.Fatalf("ctr run succeeded; want an error with %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("the error does not say %q:\n%s", w, short(out))
				}
			}
			if len(out) > 16<<10 {
				t.Errorf("the error is %d bytes long: a bad input must not be echoed whole", len(out))
			}
			s.removeContainer(t, id)
		})
	}
}

// TestCorruptKernelCache corrupts the extracted kernel in the shim's cache
// between two runs: the second run must detect it (SHA-256), replace it and
// run, never boot the corrupt file.
func TestCorruptKernelCache(t *testing.T) {
	s := newSuite(t)
	t.Cleanup(func() { s.assertClean(t) })
	run := func(id string) {
		t.Helper()
		out, err := s.d.Ctr(ctrd.CtxFor(t, 60*time.Second), s.runArgs("--rm", s.img, id, "true")...)
		if err != nil {
			t.Fatalf("ctr run %s: %v: %s", id, err, out)
		}
	}
	run("cache1")
	blobs, _ := filepath.Glob(filepath.Join(s.cacheDir, "kernels", "sha256", "*", "libkrunfw.so.5"))
	if len(blobs) != 1 {
		t.Fatalf("extracted kernels in %s: %v, want one (lean)", s.cacheDir, blobs)
	}
	want := filepath.Base(filepath.Dir(blobs[0]))
	for _, corrupt := range []func(string) error{
		func(p string) error { return os.Truncate(p, 4096) },
		func(p string) error { return os.WriteFile(p, []byte("not a kernel"), 0o644) },
	} {
		if err := corrupt(blobs[0]); err != nil {
			t.Fatal(err)
		}
		run("cache2")
		if got := sha256File(t, blobs[0]); got != want {
			t.Errorf("cached kernel after a run: sha256 %s, want %s (not replaced)", got, want)
		}
	}
}

// TestCreateDeleteCycles runs containers to completion, one after another
// and then concurrently, and checks that containerd's file descriptors and
// the host's mounts, processes, sockets, state and cgroups come back to
// where they were: nothing leaks per sandbox.
func TestCreateDeleteCycles(t *testing.T) {
	const sequential, concurrent = 200, 20
	s := newSuite(t)
	t.Cleanup(func() { s.assertClean(t) })
	ctrdPid := s.d.Pid()
	run := func(id string) error {
		out, err := s.d.Ctr(ctrd.CtxFor(t, 120*time.Second), s.runArgs("--rm", s.img, id, "true")...)
		if err != nil {
			return fmt.Errorf("ctr run %s: %v: %s", id, err, short(out))
		}
		return nil
	}
	if err := run("warmup"); err != nil {
		t.Fatal(err)
	}
	fdsBefore := countFDs(t, ctrdPid)
	for i := range sequential {
		if err := run(fmt.Sprintf("seq%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, concurrent)
	for i := range concurrent {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- run(fmt.Sprintf("par%d", i))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	s.assertClean(t)
	// containerd may keep a few descriptors for its own reasons (caches,
	// connections); a leak per sandbox would be 220 or more.
	if after := countFDs(t, ctrdPid); after > fdsBefore+5 {
		t.Errorf("containerd holds %d file descriptors after %d sandboxes, %d before", after, sequential+concurrent, fdsBefore)
	}
}

// TestShimNoLeakOverExecs runs many execs in one sandbox and checks that the
// shim's file descriptors and threads come back to their level, and that
// its memory grows by a bounded amount, not per exec.
func TestShimNoLeakOverExecs(t *testing.T) {
	const execs = 100
	s := newSuite(t)
	t.Cleanup(func() { s.assertClean(t) })
	s.startDetached(t, "leak", "sleep", "600")
	shim := findShim(t, "leak")
	exec := func(i int) {
		t.Helper()
		out, err := s.d.CtrStdout(ctrd.CtxFor(t, 30*time.Second), "task", "exec", "--exec-id", fmt.Sprintf("e%d", i), "leak", "sh", "-c", "echo out; echo err >&2")
		if err != nil || out != "out\n" {
			t.Fatalf("exec %d: %v: %q", i, err, out)
		}
	}
	for i := range 5 { // warm up: buffers, goroutine pools, ttrpc streams
		exec(i)
	}
	fds, threads, rss := countFDs(t, shim), statusField(t, shim, "Threads"), statusField(t, shim, "VmRSS")
	for i := 5; i < 5+execs; i++ {
		exec(i)
	}
	fds2, threads2, rss2 := countFDs(t, shim), statusField(t, shim, "Threads"), statusField(t, shim, "VmRSS")
	t.Logf("shim %d after %d execs: fds %d -> %d, threads %d -> %d, RSS %d -> %d KiB", shim, execs, fds, fds2, threads, threads2, rss, rss2)
	if fds2 > fds+2 {
		t.Errorf("shim file descriptors grew from %d to %d over %d execs", fds, fds2, execs)
	}
	if threads2 > threads+4 {
		t.Errorf("shim threads grew from %d to %d over %d execs", threads, threads2, execs)
	}
	if rss2 > rss+16<<10 {
		t.Errorf("shim RSS grew from %d to %d KiB over %d execs", rss, rss2, execs)
	}
}

func countFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd"))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// statusField reads a numeric field of /proc/PID/status (kB for sizes).
func statusField(t *testing.T, pid int, name string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			n, err := strconv.Atoi(strings.Fields(v)[0])
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", name, pid)
	return 0
}
