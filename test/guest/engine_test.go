package guest

import (
	"os/exec"
	"path/filepath"
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

// engineProcesses lists the engine's helpers still running.
func engineProcesses() []string { return ctrd.EngineProcesses() }
