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
// status, one sandbox per kernel variant with the blob its VMM loaded, a
// plain word on the test double where guests cannot boot, and nothing left.
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
	if !strings.Contains(string(out), "guests boot here") {
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
