package preflight

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The test engine's row is informational whatever it finds, and says
// available only with the engine's library (its marker), boot stub, init,
// QEMU, virtiofsd and vhost-device-vsock all there.
func TestTestEngineRow(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("needs a C compiler to build stand-in libraries")
	}
	lib := func(t *testing.T, dir, body string) {
		src := filepath.Join(t.TempDir(), "lib.c")
		if err := os.WriteFile(src, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(cc, "-shared", "-fPIC", "-o", filepath.Join(dir, "libkrun.so.1"), src).CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	files := func(t *testing.T, dir string, names ...string) {
		for _, n := range names {
			if err := os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, qemuErr := exec.LookPath(engineQEMU)
	_, vfsErr := os.Stat(engineVirtiofsd)
	hostHasQEMU := qemuErr == nil && vfsErr == nil
	for _, tc := range []struct {
		name      string
		make      func(t *testing.T, dir string)
		available bool
		missing   []string
	}{
		{name: "nothing built", make: func(t *testing.T, dir string) {}, missing: []string{"libkrun.so.1", "bootstub", "init.krun"}},
		{
			name: "the host double instead",
			make: func(t *testing.T, dir string) {
				lib(t, dir, "int krun_test_double(void) { return 1; }\n")
				files(t, dir, "bootstub", "init.krun", engineVsock)
			},
			missing: []string{"libkrun.so.1 (the engine's library)"},
		},
		{
			name: "the engine",
			make: func(t *testing.T, dir string) {
				lib(t, dir, "int krun_test_double(void) { return 1; }\nint krun_test_engine_qemu(void) { return 1; }\n")
				files(t, dir, "bootstub", "init.krun", engineVsock)
			},
			available: hostHasQEMU,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.make(t, dir)
			r := testEngine(dir)
			if r.Status != Info || r.Name != "test engine" || !strings.Contains(r.Detail, "never for pods") {
				t.Errorf("row %+v: want an informational test-engine row that says it is never for pods", r)
			}
			if got := strings.Contains(r.Detail, "): available: "); got != tc.available {
				t.Errorf("available = %v, want %v: %s", got, tc.available, r.Detail)
			}
			for _, m := range tc.missing {
				if !strings.Contains(r.Detail, filepath.Join(dir, m)) {
					t.Errorf("detail does not name %s as missing: %s", m, r.Detail)
				}
			}
			if !tc.available && !strings.Contains(r.Detail, "make deps testbins") {
				t.Errorf("detail lacks the fix: %s", r.Detail)
			}
		})
	}
}

// An informational line neither passes nor fails the preflight.
func TestPrintInfo(t *testing.T) {
	var b strings.Builder
	if !Print(&b, []Result{{Name: "a", Status: Pass}, {Name: "test engine", Status: Info, Detail: "x"}}) {
		t.Errorf("an Info line failed the preflight:\n%s", b.String())
	}
	if !strings.HasPrefix(strings.Split(b.String(), "\n")[1], "[info]  test engine") {
		t.Errorf("report:\n%s", b.String())
	}
	if Print(&b, []Result{{Name: "b", Status: Skip}}) {
		t.Error("a skipped check passed the preflight")
	}
}
