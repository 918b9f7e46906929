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
	fmt.Println("e2e suite: engine:", ctrd.DoubleWords)
	os.Exit(ctrd.RunSuite(m, "e2e", func() []string { return ctrd.SuiteLeftovers("bxc", "bxs") }))
}
