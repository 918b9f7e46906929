package preflight

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/boxlite/boxlite-shim/runtime/vmm"
)

// The emulated engine, where `make testbins` builds it beside the shim
// (bin/test/libkrun-qemu), and what it runs.
const (
	engineDir        = "test/libkrun-qemu"
	engineQEMU       = "qemu-system-x86_64"
	engineVirtiofsd  = "/usr/lib/qemu/virtiofsd"
	engineVsock      = "vhost-device-vsock"
	engineLabel      = "test engine only (QEMU software emulation standing in for libkrun + KVM, for tests where no guest can boot; never for pods):"
	engineInstallFix = "make deps testbins (Debian 12's qemu-system-x86 with its virtiofsd, sid's vhost-device-vsock)"
)

// TestEngine says whether the emulated engine (test/libkrun-qemu) can run
// on this node: its library built beside the shim with its boot stub and
// init, QEMU, the C virtiofsd and vhost-device-vsock. It is informational
// (Info): the engine is for tests, never a way to run pods, and its absence
// is the normal state of a production node.
func TestEngine() Result {
	dir, err := vmm.BesideShim(engineDir)
	if err != nil {
		return Result{Name: "test engine", Status: Info, Detail: fmt.Sprintf("%s not available: %v", engineLabel, err)}
	}
	return testEngine(dir)
}

// testEngine is TestEngine for the engine built in dir.
func testEngine(dir string) Result {
	r := Result{Name: "test engine", Status: Info}
	lib := filepath.Join(dir, "libkrun.so.1")
	var missing []string
	if !vmm.IsTestEngine(lib) {
		missing = append(missing, lib+" (the engine's library)")
	}
	for _, f := range []string{"bootstub", "init.krun"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || !fi.Mode().IsRegular() {
			missing = append(missing, filepath.Join(dir, f))
		}
	}
	qemu, err := exec.LookPath(engineQEMU)
	if err != nil {
		missing = append(missing, engineQEMU)
	}
	if fi, err := os.Stat(engineVirtiofsd); err != nil || fi.Mode()&0o111 == 0 {
		missing = append(missing, engineVirtiofsd)
	}
	vsock := filepath.Join(dir, engineVsock)
	if fi, err := os.Stat(vsock); err != nil || fi.Mode()&0o111 == 0 {
		if vsock, err = exec.LookPath(engineVsock); err != nil {
			missing = append(missing, engineVsock)
		}
	}
	if len(missing) > 0 {
		r.Detail = fmt.Sprintf("%s not available: missing %s (%s)", engineLabel, strings.Join(missing, ", "), engineInstallFix)
		return r
	}
	r.Detail = fmt.Sprintf("%s available: %s with %s, %s, %s", engineLabel, lib, qemu, engineVirtiofsd, vsock)
	return r
}
