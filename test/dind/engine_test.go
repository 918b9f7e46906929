package dind

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/boxlite/boxlite-shim/runtime/vmm"
	"github.com/boxlite/boxlite-shim/test/ctrd"
)

// guestLibkrun is the libkrun_path the pods' shim configs name, and what it
// is in words: the libkrun.so.1 the dynamic loader finds where the shim's
// `check` passes on this host (it boots a guest with it), else the emulated
// engine, checked to be the engine and to have what it runs (QEMU,
// virtiofsd, vhost-device-vsock): build products and `make deps` outputs, so
// their absence fails the test.
func guestLibkrun(t *testing.T) (path, words string) {
	t.Helper()
	shim := filepath.Join(ctrd.BinDir(t), "containerd-shim-boxlite-v2")
	ctrd.Require(t, shim)
	dir, err := os.MkdirTemp("", tempPrefix)
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("state_dir = %q\ncache_dir = %q\n", filepath.Join(dir, "state"), filepath.Join(dir, "cache"))), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(shim, "check", "-config", cfg).CombinedOutput(); err == nil {
		if lib := loaderLibkrun(); lib != "" {
			return lib, "libkrun (" + lib + ", which `check` boots a guest with)"
		}
		t.Logf("check passed but ldconfig lists no libkrun.so.1: the emulated engine it is\n%s", out)
	}
	lib, err := filepath.Abs(filepath.Join(ctrd.BinDir(t), "test", "libkrun-qemu", "libkrun.so.1"))
	if err != nil {
		t.Fatal(err)
	}
	d := filepath.Dir(lib)
	ctrd.Require(t, lib, filepath.Join(d, "bootstub"), filepath.Join(d, "init.krun"), filepath.Join(d, "vhost-device-vsock"), "/usr/lib/qemu/virtiofsd")
	if !vmm.IsTestEngine(lib) {
		t.Fatalf("%s is not the emulated engine (no krun_test_engine_qemu): run `make testbins`", lib)
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Fatalf("the emulated engine needs qemu-system-x86_64 (Debian's qemu-system-x86): run `make deps` (%v)", err)
	}
	return lib, "the emulated engine (test/libkrun-qemu: libkrun's API, each guest kernel booted under QEMU's software emulation, TCG; " +
		"this host's `check` finds no libkrun that boots guests), so timings are emulation's, not KVM's"
}

// loaderLibkrun is the path of the libkrun.so.1 the dynamic loader's cache
// lists, or "".
func loaderLibkrun() string {
	out, err := exec.Command("ldconfig", "-p").Output()
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(out), "\n") {
		if name, path, ok := strings.Cut(strings.TrimSpace(l), " => "); ok && strings.HasPrefix(name, "libkrun.so.1 ") {
			return path
		}
	}
	return ""
}

// engineProcesses lists the helpers of the emulated engine under bin (a
// checkout's bin directory) still running: QEMU started with its boot stub,
// virtiofsd serving a guest root the way the engine starts it (started by
// the engine's launcher, a boxlite-vmm of bin, or orphaned), its
// vhost-device-vsock. (The VMM and the launcher run boxlite-vmm:
// ctrd.OurProcesses has them.) Other QEMUs on the host are not ours.
func engineProcesses(bin string) []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		args := strings.ReplaceAll(string(cmdline), "\x00", " ")
		switch c := strings.TrimSpace(string(comm)); {
		case c == "qemu-system-x86" && strings.Contains(args, bin+"/test/libkrun-qemu/bootstub"),
			c == "virtiofsd" && strings.Contains(args, "source=/proc/self/fd/3/.") && startedFrom(pid, bin),
			strings.HasPrefix(c, "vhost-device-vs") && strings.HasPrefix(exe, bin+"/test/libkrun-qemu/"):
			out = append(out, fmt.Sprintf("%d %s", pid, args))
		}
	}
	return out
}

// startedFrom reports whether process pid's parent runs a binary under bin,
// or pid is an orphan (its parent is gone: nothing says whose it was).
func startedFrom(pid int, bin string) bool {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return true
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 || f[1] == "1" {
		return true
	}
	exe, _ := os.Readlink("/proc/" + f[1] + "/exe")
	return strings.HasPrefix(exe, bin+"/")
}
