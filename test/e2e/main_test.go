package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/boxlite/boxlite-shim/test/ctrd"
)

// TestMain checks, after the whole suite, that nothing of ours remains on
// the host: no shim, VMM or agent process, no container rootfs mount, no
// per-sandbox cgroup, no suite directory (and so no socket of ours).
func TestMain(m *testing.M) {
	unlock := ctrd.LockSuites() // not beside the other end-to-end suite
	code := m.Run()
	if os.Geteuid() == 0 {
		if left := ctrd.SuiteLeftovers("bxc", "bxs"); len(left) > 0 {
			fmt.Fprintln(os.Stderr, "e2e: the suite left these behind:")
			for _, l := range left {
				fmt.Fprintln(os.Stderr, "  ", l)
			}
			if code == 0 {
				code = 1
			}
		}
	}
	unlock()
	os.Exit(code)
}
