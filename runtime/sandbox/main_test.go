package sandbox

import (
	"os"
	"testing"

	"github.com/boxlite/boxlite-shim/test/ctrd"
)

// TestMain holds the end-to-end suites' lock: the stand-in VMM processes of
// these tests must not show up in a suite's host-wide leftover checks.
func TestMain(m *testing.M) {
	unlock := ctrd.LockSuites()
	code := m.Run()
	unlock()
	os.Exit(code)
}
