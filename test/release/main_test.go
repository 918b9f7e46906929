// Package release tests the release an operator installs, end to end: it
// runs `make release` twice, the second time in a fresh clone of the same
// commit (the tarballs must be byte for byte the same), unpacks the tarball,
// checks its layout and SHA256SUMS, installs it into a scratch root with the
// release's own install.sh, runs a boxlite and a boxlite-net pod through a
// private containerd 2.4 that imports the installed drop-in, and uninstalls:
// nothing may be left. What was installed is changed only to point into the
// scratch root and, for the pods' VMMs, at the libkrun test double. It has no
// code of its own.
package release

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/boxlite/boxlite-shim/test/ctrd"
)

func TestMain(m *testing.M) {
	fmt.Println("release suite: engine:", ctrd.DoubleWords)
	os.Exit(ctrd.RunSuite(m, "release", func() []string {
		// Its scratch roots (bxr) and daemons' directories (bxc) too.
		return ctrd.PodLeftovers([]string{"/bxr"}, []string{filepath.Join(os.TempDir(), "bxc*"), filepath.Join(os.TempDir(), "bxr*")})
	}))
}
