// Package sandboxtest reads what the shim keeps of a sandbox for the
// end-to-end suites (test/e2e, test/guest, test/crid's environments): its
// state record in the sandbox task's bundle. It is apart from test/ctrd
// because runtime/sandbox's own tests import test/ctrd. It must not be
// imported by product code.
package sandboxtest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/boxlite/boxlite-shim/runtime/sandbox"
)

// Record reads the sandbox state record the shim keeps in a sandbox
// task's bundle (the VMM's PID, the sandbox directory); the test fails
// when there is none or it names no VMM.
func Record(t testing.TB, bundle string) sandbox.Record {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(bundle, sandbox.RecordName))
	if err != nil {
		t.Fatalf("sandbox state record in %s: %v", bundle, err)
	}
	var r sandbox.Record
	if err := json.Unmarshal(b, &r); err != nil || r.VMMPid <= 0 {
		t.Fatalf("sandbox state record %s: %v", b, err)
	}
	return r
}
