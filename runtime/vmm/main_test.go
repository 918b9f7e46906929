package vmm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxlite/boxlite-shim/kernel"
	"github.com/boxlite/boxlite-shim/reaper"
	"github.com/boxlite/boxlite-shim/test/ctrd"
)

// What TestMain built and found. The tests skip with skipReason when a
// prerequisite is missing, and fail with buildErr when building failed.
var tb struct {
	skipReason string
	buildErr   error
	dir        string
	double     string // the libkrun test double (libkrun.so.1)
	vmm        string // boxlite-vmm
	workload   string // test/vmmworkload, static
	agent      string // cmd/boxlite-agent, static
	cc         string
	lean       string // the lean kernel blob
	net        string // the net kernel blob, or a stand-in
	netReal    bool
	netMissing string // where the real net blob was looked for
}

// standinKrunfw is a libkrunfw-ABI library that stands in for the net kernel
// when the real one has not been built: it is a different file, which is all
// the maps test needs.
const standinKrunfw = `#include <stddef.h>
static char kernel[4096] __attribute__((aligned(4096))) = "boxlite: stand-in for the net kernel, not bootable";
char *krunfw_get_kernel(size_t *load_addr, size_t *entry_addr, size_t *size)
{ *load_addr = 0x1000000; *entry_addr = 0x1000000; *size = sizeof kernel; return kernel; }
int krunfw_get_version(void) { return 5; }
`

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	// VMMs of this package must not show up in an end-to-end suite's
	// host-wide leftover checks: hold the suites' lock too.
	defer ctrd.LockSuites()()
	dir, err := os.MkdirTemp("", "vmmtest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	tb.dir = dir
	setup()
	if tb.skipReason == "" && tb.buildErr == nil {
		// As in the shim: orphans of the VMM's group come back to us.
		if err := reaper.SetSubreaper(); err != nil {
			fmt.Fprintln(os.Stderr, "subreaper:", err)
			return 1
		}
	}
	return m.Run()
}

func depsDir() string {
	if d := os.Getenv("BOXLITE_DEPS"); d != "" {
		return d
	}
	return "/var/cache/boxlite-deps"
}

func regular(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

func setup() {
	if os.Geteuid() != 0 {
		tb.skipReason = "needs root (the libkrun test double makes namespaces and mounts)"
		return
	}
	cc, err := exec.LookPath("cc")
	if err != nil {
		tb.skipReason = "needs a C compiler (cc) to build test/libkrun-double"
		return
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		tb.skipReason = "needs the go command on PATH to build cmd/boxlite-vmm"
		return
	}
	deps := depsDir()
	leanDeps := filepath.Join(deps, "kernels", "lean", KernelSOName)
	switch {
	case os.Getenv("BOXLITE_TEST_LEAN_BLOB") != "":
		tb.lean = os.Getenv("BOXLITE_TEST_LEAN_BLOB")
		if !regular(tb.lean) {
			tb.skipReason = fmt.Sprintf("BOXLITE_TEST_LEAN_BLOB=%s is not a file; run `make deps` or point it at libkrunfw.so.5", tb.lean)
			return
		}
	case regular(leanDeps):
		tb.lean = leanDeps
	default:
		tb.skipReason = fmt.Sprintf("needs the lean kernel blob %s: run `make deps` (or set BOXLITE_TEST_LEAN_BLOB to a libkrunfw.so.5)", leanDeps)
		return
	}
	tb.netMissing = filepath.Join(deps, "kernels", "net", KernelSOName)
	if regular(tb.netMissing) {
		tb.net, tb.netReal = tb.netMissing, true
	}

	run := func(env []string, name string, args ...string) {
		if tb.buildErr != nil {
			return
		}
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			tb.buildErr = fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	tb.double = filepath.Join(tb.dir, "lib", "libkrun.so.1")
	tb.vmm = filepath.Join(tb.dir, "bin", VMMBinaryName)
	tb.workload = filepath.Join(tb.dir, "bin", "vmmworkload")
	tb.agent = filepath.Join(tb.dir, "bin", "boxlite-agent")
	tb.cc = cc
	_ = os.MkdirAll(filepath.Join(tb.dir, "lib"), 0o755)
	run(nil, cc, "-O2", "-Wall", "-Werror", "-shared", "-fPIC", "-Wl,-soname,libkrun.so.1",
		"-o", tb.double, "../../test/libkrun-double/libkrun_double.c", "-ldl", "-pthread")
	run([]string{"CGO_ENABLED=1"}, goBin, "build", "-o", tb.vmm, "github.com/boxlite/boxlite-shim/cmd/boxlite-vmm")
	run([]string{"CGO_ENABLED=0"}, goBin, "build", "-o", tb.workload, "github.com/boxlite/boxlite-shim/test/vmmworkload")
	run([]string{"CGO_ENABLED=0"}, goBin, "build", "-o", tb.agent, "github.com/boxlite/boxlite-shim/cmd/boxlite-agent")
	if !tb.netReal && tb.buildErr == nil {
		src := filepath.Join(tb.dir, "standin.c")
		tb.net = filepath.Join(tb.dir, "standin-net", "libkrunfw.so.5.standin")
		_ = os.MkdirAll(filepath.Dir(tb.net), 0o755)
		if err := os.WriteFile(src, []byte(standinKrunfw), 0o644); err != nil {
			tb.buildErr = err
		}
		run(nil, cc, "-shared", "-fPIC", "-Wl,-soname,libkrunfw.so.5", "-o", tb.net, src)
	}
}

// doubles are the double's release variants, built on first use.
var doubles struct {
	mu    sync.Mutex
	built map[string]string // DOUBLE_VERSION -> the library
}

// doubleAs installs the double built as libkrun release build (a
// DOUBLE_VERSION: "11800" is 1.18.0's symbols) under the file name name,
// in a directory of its own, and returns its path.
func doubleAs(t *testing.T, build, name string) string {
	t.Helper()
	need(t)
	doubles.mu.Lock()
	defer doubles.mu.Unlock()
	lib, ok := doubles.built[build]
	if !ok {
		lib = filepath.Join(tb.dir, "double-"+build, "libkrun.so.1")
		if err := os.MkdirAll(filepath.Dir(lib), 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(tb.cc, "-O2", "-Wall", "-Werror", "-shared", "-fPIC", "-DDOUBLE_VERSION="+build, "-Wl,-soname,libkrun.so.1",
			"-o", lib, "../../test/libkrun-double/libkrun_double.c", "-ldl", "-pthread").CombinedOutput()
		if err != nil {
			t.Fatalf("building the double as %s: %v\n%s", build, err, out)
		}
		if doubles.built == nil {
			doubles.built = map[string]string{}
		}
		doubles.built[build] = lib
	}
	dir, err := os.MkdirTemp(tb.dir, "as-")
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, name)
	copyFile(t, lib, dst, 0o755)
	return dst
}

func need(t *testing.T) {
	t.Helper()
	if tb.buildErr != nil {
		t.Fatalf("building the test binaries: %v", tb.buildErr)
	}
	if tb.skipReason != "" {
		t.Skip(tb.skipReason)
	}
}

// env is one test's directories and a Config that works with the double.
type env struct {
	base, root, state string
	cfg               Config
	mounts            []string // mountinfo lines under base, before the test
}

func newEnv(t *testing.T) *env {
	t.Helper()
	need(t)
	base, err := os.MkdirTemp("", "vmm") // short: agent.sock must fit a sockaddr_un
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	e := &env{base: base, root: filepath.Join(base, "root"), state: filepath.Join(base, "state")}
	for _, d := range []string{"proc", "work"} {
		if err := os.MkdirAll(filepath.Join(e.root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, tb.workload, filepath.Join(e.root, "vmmworkload"), 0o755)
	e.cfg = Config{
		ID:           "sb-" + strings.ReplaceAll(t.Name(), "/", "-"),
		JailDir:      base,
		StateDir:     e.state,
		RootDir:      e.root,
		Kernel:       kernel.Source{Name: kernel.Lean, Path: tb.lean},
		LibkrunPath:  tb.double,
		VMMBinary:    tb.vmm,
		CPUs:         2,
		MemoryMiB:    512,
		AgentPort:    1024,
		ReadyPort:    1025,
		Workload:     []string{"/vmmworkload", "serve", "1025"},
		Env:          []string{"FOO=bar baz"},
		Workdir:      "/work",
		ReadyTimeout: 10 * time.Second,
	}
	e.mounts = mountsUnder(base)
	return e
}

// start starts e.cfg and stops it when the test ends.
func (e *env) start(t *testing.T) *VMM {
	t.Helper()
	v, err := Start(context.Background(), e.cfg, reaper.Default())
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := v.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return v
}

// assertClean checks what a stopped or failed VMM must leave behind: no child
// process of ours (running or zombie), no state directory, no socket and no
// mount under the test's directory.
func (e *env) assertClean(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		kids := children()
		if len(kids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("child processes left (pid state comm): %v", kids)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Lstat(e.state); !os.IsNotExist(err) {
		t.Errorf("state directory %s left behind (lstat: %v)", e.state, err)
	}
	_ = filepath.WalkDir(e.base, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type()&os.ModeSocket != 0 {
			t.Errorf("socket left behind: %s", p)
		}
		return nil
	})
	if now := mountsUnder(e.base); strings.Join(now, "\n") != strings.Join(e.mounts, "\n") {
		t.Errorf("mounts under %s changed:\nbefore %q\nafter  %q", e.base, e.mounts, now)
	}
}

// children lists this process's children as "pid state comm".
func children() []string {
	ents, _ := os.ReadDir("/proc")
	me := os.Getpid()
	var out []string
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		f := strings.Fields(s[i+1:]) // state ppid ...
		if i < 0 || len(f) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid == me {
			out = append(out, fmt.Sprintf("%d %s %s", pid, f[0], s[strings.IndexByte(s, '(')+1:i]))
		}
	}
	return out
}

func mountsUnder(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir) {
			out = append(out, l)
		}
	}
	return out
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// call is one line of the double's call log.
type call map[string]any

func readCalls(t *testing.T, path string) []call {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("call log: %v", err)
	}
	var calls []call
	for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var c call
		if err := json.Unmarshal(l, &c); err != nil {
			t.Fatalf("call log line %q: %v", l, err)
		}
		calls = append(calls, c)
	}
	return calls
}

// find returns the only call named name.
func find(t *testing.T, calls []call, name string) call {
	t.Helper()
	var found call
	for _, c := range calls {
		if c["call"] == name {
			if found != nil {
				t.Fatalf("%s called twice: %v", name, calls)
			}
			found = c
		}
	}
	if found == nil {
		t.Fatalf("%s not in the call log: %v", name, calls)
	}
	return found
}

// agentConn is a connection to the test workload through the agent socket.
type agentConn struct {
	net.Conn
	r *bufio.Reader
}

func dialAgent(t *testing.T, sock string) (*agentConn, string) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("dial agent socket: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	a := &agentConn{Conn: c, r: bufio.NewReader(c)}
	return a, a.line(t)
}

func (a *agentConn) line(t *testing.T) string {
	t.Helper()
	l, err := a.r.ReadString('\n')
	if err != nil {
		t.Fatalf("reading from the workload: %v (got %q)", err, l)
	}
	return strings.TrimSuffix(l, "\n")
}

func (a *agentConn) ask(t *testing.T, cmd string) string {
	t.Helper()
	if _, err := fmt.Fprintln(a, cmd); err != nil {
		t.Fatalf("writing %q: %v", cmd, err)
	}
	return a.line(t)
}

func waitDone(t *testing.T, v *VMM) reaper.Exit {
	t.Helper()
	select {
	case <-v.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the VMM did not exit")
	}
	e, ok := v.Exit()
	if !ok {
		t.Fatal("Done closed but Exit not known")
	}
	return e
}
