package guest

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/boxlite/boxlite-shim/test/ctrd"
)

// notKernels are libkrunfw-ABI libraries whose "kernel" is not one: bytes
// the vCPU faults on at once (the guest resets), and a loop at the entry
// point (the guest runs and never boots).
var notKernels = map[string]string{
	"garbage": `static char kernel[4096] __attribute__((aligned(4096))) = "boxlite test: not a kernel";`,
	"spins":   `static char kernel[4096] __attribute__((aligned(4096))) = { 0xeb, 0xfe }; /* jmp . */`,
}

const krunfwABI = `
#include <stddef.h>
char *krunfw_get_kernel(size_t *load_addr, size_t *entry_addr, size_t *size)
{ *load_addr = 0x1000000; *entry_addr = 0x1000000; *size = sizeof kernel; return kernel; }
int krunfw_get_version(void) { return 5; }
`

// TestFaults: what a real guest can do wrong. Each ends in a clear error
// that quotes the guest console (console.log) and leaves nothing behind.
func TestFaults(t *testing.T) {
	s := newSuite(t)

	// The VMM killed while its guest runs: the task exits 255 (a sandbox
	// failure, not the container's status), and the shim logs why, with
	// the end of the guest's console.
	t.Run("vmm-killed", func(t *testing.T) {
		t.Cleanup(func() { s.assertClean(t) })
		id := "vmmkill"
		cmd := s.d.CtrCommand(ctrd.CtxFor(t, 2*time.Minute), s.runArgs("--rm", s.img, id, "sh", "-c", "echo ready; exec sleep 1000")...)
		r := ctrd.StartUntilReady(t, cmd)
		s.d.WaitRunning(t, ctrd.CtxFor(t, time.Minute), id)
		rec := s.record(t, id)
		if err := kill(rec.VMMPid); err != nil {
			t.Fatal(err)
		}
		_, _ = io.ReadAll(r)
		if code := ctrd.ExitCode(cmd.Wait()); code != 255 {
			t.Errorf("a task whose VMM was killed: exit %d, want 255 (sandbox failure)", code)
		}
		l := s.waitLog(t, "sandbox failed", fmt.Sprintf("the VMM (pid %d) was killed by signal 9", rec.VMMPid), "console.log: ")
		t.Logf("shim: %.600s", l)
	})

	// The guest kernel panics: a privileged container sets the guest's
	// vm.panic_on_oom to 2 (panic on any OOM, a memory cgroup's too) and
	// allocates past its limit. (The issue's /proc/sysrq-trigger is not
	// there: libkrunfw's config, and so both variants, leave out
	// CONFIG_MAGIC_SYSRQ.) libkrun's panic=-1 resets the VM, the VMM ends,
	// the task exits 255, and the shim's error quotes the panic from the
	// console.
	t.Run("guest-panic", func(t *testing.T) {
		t.Cleanup(func() { s.assertClean(t) })
		id := "panic1"
		cmd := s.d.CtrCommand(ctrd.CtxFor(t, 2*time.Minute), s.runArgs("--rm", "--privileged", "--memory-limit", fmt.Sprint(32<<20), s.img, id,
			"sh", "-c", "echo 2 > /proc/sys/vm/panic_on_oom && echo ready; sleep 0.5; x=a; while :; do x=$x$x; done")...)
		r := ctrd.StartUntilReady(t, cmd)
		_, _ = io.ReadAll(r)
		if code := ctrd.ExitCode(cmd.Wait()); code != 255 {
			t.Errorf("a task whose guest kernel panicked: exit %d, want 255 (sandbox failure)", code)
		}
		l := s.waitLog(t, "sandbox failed", "console.log: ", "Kernel panic - not syncing: Out of memory")
		t.Logf("shim: %.600s", l)
	})

	// A kernel file that is not a kernel ([kernel.paths]): the guest never
	// boots, and the start fails within the ready timeout, saying so and
	// naming the console log.
	t.Run("never-boots", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			want []string
		}{
			{"garbage", []string{"the VMM exited before the guest was ready", "the guest ended before its init started", "console.log: (empty"}},
			{"spins", []string{"the guest did not say it was ready within 10s", "console.log: (empty"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Cleanup(func() { s.assertClean(t) })
				blob := buildNotKernel(t, tc.name)
				cfg := s.writeConfig(t, "notkernel-"+tc.name+".toml", fmt.Sprintf("[kernel.paths]\nlean = %q\n[vm]\nready_timeout_s = 10\n", blob))
				id := "nokernel-" + tc.name
				t.Cleanup(func() { s.removeContainer(t, id) })
				start := time.Now()
				out, err := s.d.Ctr(ctrd.CtxFor(t, 2*time.Minute), "run", "--rm", "--runtime", runtimeName, "--runtime-config-path", cfg, s.img, id, "true")
				took := time.Since(start)
				t.Logf("after %s: %s", took.Round(time.Millisecond), strings.TrimSpace(out))
				if err == nil {
					t.Fatal("ctr run succeeded on a kernel that is not one")
				}
				for _, w := range tc.want {
					if !strings.Contains(out, w) {
						t.Errorf("the error does not say %q", w)
					}
				}
				if took > time.Minute {
					t.Errorf("failing took %s: the ready timeout is 10s", took)
				}
			})
		}
	})
}

// buildNotKernel compiles notKernels[name] into a libkrunfw.so.5.
func buildNotKernel(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	src, so := filepath.Join(dir, "k.c"), filepath.Join(dir, "libkrunfw.so.5")
	if err := os.WriteFile(src, []byte(notKernels[name]+krunfwABI), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cc", "-shared", "-fPIC", "-Wl,-soname,libkrunfw.so.5", "-o", so, src).CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s", err, out)
	}
	return so
}
