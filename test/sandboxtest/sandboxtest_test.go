package sandboxtest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/boxlite/boxlite-shim/runtime/sandbox"
)

// Record reads back the record the shim writes in a bundle.
func TestRecord(t *testing.T) {
	bundle := t.TempDir()
	want := sandbox.Record{ID: "pod1", Dir: "/run/x/pod1", VMMPid: 42}
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, sandbox.RecordName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := Record(t, bundle); got.ID != want.ID || got.Dir != want.Dir || got.VMMPid != want.VMMPid {
		t.Errorf("Record = %+v, want %+v", got, want)
	}
}
