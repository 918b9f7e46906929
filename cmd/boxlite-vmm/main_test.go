package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The tests build boxlite-vmm and the libkrun test double (as several
// libkrun releases: their exported symbols) and run them.

var tb struct {
	dir, vmm, cc, workload string
	skip                   string
	err                    error
	built                  map[string]string // DOUBLE_VERSION -> library
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "boxlite-vmm-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tb.dir, tb.built = dir, map[string]string{}
	if tb.cc, err = exec.LookPath("cc"); err != nil {
		tb.skip = "needs a C compiler (cc) to build test/libkrun-double"
	} else {
		tb.vmm = filepath.Join(dir, "boxlite-vmm")
		tb.workload = filepath.Join(dir, "vmmworkload")
		for _, b := range [][]string{
			{"CGO_ENABLED=1", "-o", tb.vmm, "."},
			{"CGO_ENABLED=0", "-o", tb.workload, "github.com/boxlite/boxlite-shim/test/vmmworkload"},
		} {
			cmd := exec.Command("go", append([]string{"build"}, b[1:]...)...)
			cmd.Env = append(os.Environ(), b[0])
			if out, err := cmd.CombinedOutput(); err != nil {
				tb.err = fmt.Errorf("go build %s: %v\n%s", b[len(b)-1], err, out)
			}
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// double installs the test double built as release build (DOUBLE_VERSION,
// "" for the default: 1.19.0's symbols) as dir/name and returns its path.
func double(t *testing.T, build, name string) string {
	t.Helper()
	if tb.err != nil {
		t.Fatal(tb.err)
	}
	if tb.skip != "" {
		t.Skip(tb.skip)
	}
	lib, ok := tb.built[build]
	if !ok {
		lib = filepath.Join(tb.dir, "build-"+build, "libkrun.so.1")
		if err := os.MkdirAll(filepath.Dir(lib), 0o755); err != nil {
			t.Fatal(err)
		}
		args := []string{"-O2", "-Wall", "-Werror", "-shared", "-fPIC", "-Wl,-soname,libkrun.so.1", "-o", lib,
			"../../test/libkrun-double/libkrun_double.c", "-ldl", "-pthread"}
		if build != "" {
			args = append(args, "-DDOUBLE_VERSION="+build)
		}
		if out, err := exec.Command(tb.cc, args...).CombinedOutput(); err != nil {
			t.Fatalf("cc: %v\n%s", err, out)
		}
		tb.built[build] = lib
	}
	dst := filepath.Join(t.TempDir(), name)
	b, err := os.ReadFile(lib)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

func probe(t *testing.T, lib string) (probeReport, int) {
	t.Helper()
	cmd := exec.Command(tb.vmm, "-probe", "-libkrun", lib)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	var rep probeReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("-probe printed %q (%s): %v", stdout.String(), stderr.String(), err)
	}
	return rep, cmd.ProcessState.ExitCode()
}

// -probe tells libkrun's version the way every VMM start does (krunver.c):
// the file name's, when the symbols agree; the symbols' range otherwise,
// trusted over the name. Before, -probe read the version from the file name
// alone (a mislabelled 1.18 passed for 1.19.2, a 1.16.0 for usable) and
// never refused an old one; its report had no fields for the rest, so this
// test did not even build against it.
func TestProbeVersion(t *testing.T) {
	for _, tc := range []struct {
		build, file string
		version     string
		exact       bool
		from        string
		supported   bool
		unsupported string
	}{
		{"11600", "libkrun.so.1.16.0", "1.16.0", true, "file name libkrun.so.1.16.0; its symbols agree: 1.16.x", false,
			"too old: needs >= 1.18.1 for the staged kernel (libkrun before 1.17.0 loads libkrunfw.so.4"},
		{"11700", "libkrun.so.1.17.0", "1.17.0", true, "file name libkrun.so.1.17.0; its symbols agree: >= 1.17.0, < 1.17.3", false,
			"libkrun 1.17.0 (file name libkrun.so.1.17.0; its symbols agree: >= 1.17.0, < 1.17.3) is too old: needs >= 1.18.1"},
		{"11703", "libkrun.so.1", ">= 1.17.3, < 1.18.0", false, "symbols only: the file name libkrun.so.1 carries no version", false,
			"is too old: needs >= 1.18.1 for the staged kernel (libkrun before 1.18.1 stalls guest-to-host vsock"},
		{"11800", "libkrun.so.1.18.0", "1.18.0", true, "file name libkrun.so.1.18.0; its symbols agree: 1.18.x", false, "is too old"},
		{"11800", "libkrun.so.1.18.1", "1.18.1", true, "file name libkrun.so.1.18.1; its symbols agree: 1.18.x", true, ""},
		{"11800", "libkrun.so.1", "1.18.x", false, "symbols only: the file name libkrun.so.1 carries no version", false,
			"cannot be told from 1.18.0, which is too old"},
		{"11800", "libkrun.so.1.19.2", "1.18.x", false, "file name libkrun.so.1.19.2 says 1.19.2, but its symbols are those of 1.18.x: the symbols are trusted", false,
			"install libkrun under its versioned file name (libkrun.so.1.18.1, with libkrun.so.1 a link to it"},
		{"11800", "libkrun.so.1.17.4", "1.18.x", false, "file name libkrun.so.1.17.4 says 1.17.4, but its symbols are those of 1.18.x: the symbols are trusted", false,
			"cannot be told from 1.18.0"},
		{"", "libkrun.so.1", ">= 1.19.0", false, "symbols only: the file name libkrun.so.1 carries no version", true, ""},
		{"11900", "libkrun-sev.so.1.19.0", "1.19.0", true, "file name libkrun-sev.so.1.19.0; its symbols agree: >= 1.19.0", true, ""},
	} {
		t.Run(tc.build+" as "+tc.file, func(t *testing.T) {
			rep, code := probe(t, double(t, tc.build, tc.file))
			if rep.Version != tc.version || rep.VersionExact != tc.exact || rep.VersionFrom != tc.from || rep.Supported != tc.supported {
				t.Errorf("probe: version %q exact %v from %q supported %v\nwant    version %q exact %v from %q supported %v",
					rep.Version, rep.VersionExact, rep.VersionFrom, rep.Supported, tc.version, tc.exact, tc.from, tc.supported)
			}
			if !strings.Contains(rep.Unsupported, tc.unsupported) || (tc.supported != (rep.Unsupported == "")) {
				t.Errorf("unsupported = %q, want it to say %q", rep.Unsupported, tc.unsupported)
			}
			if want := map[bool]int{true: 0, false: 8}[tc.supported]; code != want {
				t.Errorf("-probe exited %d, want %d", code, want)
			}
			if !rep.TestDouble || len(rep.Missing) > 0 {
				t.Errorf("probe: test_double %v, missing %v", rep.TestDouble, rep.Missing)
			}
		})
	}
	// A link named as the soname resolves to the versioned file, as
	// libkrun's make install lays them out.
	lib := double(t, "11800", "libkrun.so.1.18.1")
	link := filepath.Join(filepath.Dir(lib), "libkrun.so.1")
	if err := os.Symlink(filepath.Base(lib), link); err != nil {
		t.Fatal(err)
	}
	if rep, code := probe(t, link); rep.Version != "1.18.1" || !rep.Supported || code != 0 || rep.File != lib {
		t.Errorf("probe of %s: %+v, exit %d; want 1.18.1 from %s", link, rep, code, lib)
	}
}

// -no-tsi is a boolean flag to jail.c's parser too: placed before -root it
// must not take -root for its value (the jail would then have no root:
// seen failing with "no-tsi" left out of jail.c's boolflag).
func TestNoTSIIsABooleanFlag(t *testing.T) {
	lib := double(t, "", "libkrun.so.1")
	if os.Geteuid() != 0 {
		t.Skip("needs root (the jail's mount namespace)")
	}
	deps := os.Getenv("BOXLITE_DEPS")
	if deps == "" {
		deps = "/var/cache/boxlite-deps"
	}
	blob := filepath.Join(deps, "kernels", "lean", "libkrunfw.so.5")
	if _, err := os.Stat(blob); err != nil {
		t.Skipf("needs the lean kernel blob %s: run `make deps`", blob)
	}
	jail, err := os.MkdirTemp("", "vmmjail") // short: the socket path must fit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(jail) })
	for _, d := range []string{"root/proc", "state"} {
		if err := os.MkdirAll(filepath.Join(jail, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	w, err := os.ReadFile(tb.workload)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(jail, "root", "vmmworkload"), w, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tb.vmm, "-libkrun", lib, "-allow-test-double", "-jail", jail, "-krunfw", blob,
		"-no-tsi", "-root", "/root", "-vsock", "1024:/state/agent.sock", "--", "/vmmworkload", "exit-now", "3")
	cmd.Dir = filepath.Join(jail, "state")
	cmd.Env = []string{"KRUN_DOUBLE_LOG=/state/calls.jsonl"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 3 {
		t.Fatalf("boxlite-vmm: %v, want the workload's exit 3\n%s", err, out)
	}
	calls, _ := os.ReadFile(filepath.Join(jail, "state", "calls.jsonl"))
	for _, want := range []string{`{"call":"krun_set_root","ctx":0,"root":"/root","ret":0}`, `{"call":"krun_disable_implicit_vsock","ctx":0,"ret":0}`,
		`{"call":"krun_add_vsock","ctx":0,"tsi_features":0,"ret":0}`} {
		if !strings.Contains(string(calls), want) {
			t.Errorf("the call log lacks %s:\n%s", want, calls)
		}
	}
}
