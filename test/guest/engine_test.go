package guest

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

// engineWords says what the suite's sandboxes run on.
const engineWords = "the emulated engine (test/libkrun-qemu, built by make testbins into bin/test/libkrun-qemu): " +
	"libkrun's API with each guest kernel booted under QEMU's software emulation (TCG), standing in for libkrun + KVM; " +
	"no KVM is used, and timings are not KVM's"

// engineLib is the emulated engine's libkrun.so.1, checked to be the engine
// and to have what it runs (QEMU, virtiofsd, vhost-device-vsock beside it):
// build products and `make deps` outputs, so their absence fails the test.
func engineLib(t testing.TB) string {
	t.Helper()
	lib, err := filepath.Abs(filepath.Join(ctrd.BinDir(t), "test", "libkrun-qemu", "libkrun.so.1"))
	if err != nil {
		t.Fatal(err)
	}
	ctrd.Require(t, lib, filepath.Join(filepath.Dir(lib), "bootstub"), filepath.Join(filepath.Dir(lib), "init.krun"),
		filepath.Join(filepath.Dir(lib), "vhost-device-vsock"), "/usr/lib/qemu/virtiofsd")
	if !vmm.IsTestEngine(lib) {
		t.Fatalf("%s is not the emulated engine (no krun_test_engine_qemu): run `make testbins`", lib)
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Fatalf("the emulated engine needs qemu-system-x86_64 (Debian's qemu-system-x86): run `make deps` (%v)", err)
	}
	return lib
}

// engineProcesses lists the engine's helpers still running: QEMU started
// with the engine's boot stub, virtiofsd serving a guest root the way the
// engine starts it, the engine's vhost-device-vsock. (The VMM and the
// engine's launcher run boxlite-vmm: ctrd.OurProcesses has them.) Other
// QEMUs on the host are not ours.
func engineProcesses() []string {
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
		case c == "qemu-system-x86" && strings.Contains(args, "/libkrun-qemu/bootstub"),
			c == "virtiofsd" && strings.Contains(args, "source=/proc/self/fd/3/."),
			strings.HasPrefix(c, "vhost-device-vs") && strings.Contains(exe, "/libkrun-qemu/"):
			out = append(out, fmt.Sprintf("%d %s", pid, args))
		}
	}
	return out
}
