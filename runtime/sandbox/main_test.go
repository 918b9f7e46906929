package sandbox

import (
	"os"
	"testing"

	"github.com/boxlite/boxlite-shim/test/ctrd"
)

// TestMain holds the end-to-end suites' lock: the stand-in VMM processes of
// these tests must not show up in a suite's host-wide leftover checks. The
// copy of this binary that TestSystemdScope runs inside a private systemd
// does not: its parent holds the lock, which it would wait for forever (the
// private namespaces share /tmp, and -test.timeout starts only in m.Run).
func TestMain(m *testing.M) {
	unlock := func() {}
	if os.Getenv(inPrivateSystemd) == "" {
		unlock = ctrd.LockSuites()
	}
	code := m.Run()
	unlock()
	os.Exit(code)
}
