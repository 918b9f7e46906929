package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/boxlite/boxlite-shim/test/ctrd"
)

// TestDemo runs `make demo`'s script (deploy/demo.sh) as the README's first
// command does after the build, and checks what it shows: a container's exit
// status, one sandbox per kernel variant with the blob its VMM loaded, where
// guests cannot boot under KVM the emulated engine named plainly and each
// guest kernel's version and ip_tables seen from inside its container (or,
// without the engine, a plain word on the test double), and nothing left.
func TestDemo(t *testing.T) {
	root := ctrd.RepoRoot(t)
	ctrd.Require(t, filepath.Join(ctrd.BinDir(t), "containerd-shim-boxlite-v2"), filepath.Join(ctrd.BinDir(t), "test", "libkrun.so.1"))
	cmd := exec.Command(filepath.Join(root, "deploy", "demo.sh"))
	cmd.Env = append(os.Environ(), "BOXLITE_DEPS="+ctrd.Deps())
	out, err := cmd.CombinedOutput()
	t.Logf("\n%s", out)
	if err != nil {
		t.Fatalf("demo.sh: %v", err)
	}
	want := []string{
		"hi from ", "exit status: 3 (the container's)",
		"the lean variant: Linux 6.12", "iptables=no",
		"the net variant: Linux 6.12", "-boxlite-net, iptables=yes",
		"processes of ours left behind: 0",
	}
	switch {
	case strings.Contains(string(out), "guests boot here"):
	case strings.Contains(string(out), "QEMU software emulation standing in for libkrun + KVM"):
		// The emulated engine (make testbins builds it; make deps has
		// QEMU): each container's guest kernel, seen from inside.
		want = append(want,
			"uname -r in the guest: 6.12.91  (the lean kernel, under QEMU emulation)",
			"-boxlite-net  (the net kernel, under QEMU emulation)",
			"/proc/net/ip_tables_names in the guest: absent (no legacy iptables)",
			"/proc/net/ip_tables_names in the guest: exists (legacy iptables)")
	default:
		want = append(want, "libkrun TEST", "the HOST's kernel: test double, no VM")
	}
	for _, w := range want {
		if !strings.Contains(string(out), w) {
			t.Errorf("the demo does not show %q", w)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(os.TempDir(), "boxlite-demo.*")); len(left) > 0 {
		t.Errorf("the demo left %v", left)
	}
}
