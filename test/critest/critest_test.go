//go:build critest

package critest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/boxlite/boxlite-shim/test/ctrd"
)

func TestMain(m *testing.M) {
	os.Exit(ctrd.RunSuite(m, "critest", func() []string {
		left := ctrd.PodLeftovers(nil, nil)
		ents, _ := os.ReadDir(os.TempDir())
		for _, e := range ents {
			if critestTemp.MatchString(e.Name()) {
				left = append(left, "directory: "+filepath.Join(os.TempDir(), e.Name()))
			}
		}
		return left
	}))
}

// TestCRIValidation runs critest on runc and on boxlite and fails when a
// spec passes on runc and not on boxlite, outside the exemption lists.
func TestCRIValidation(t *testing.T) {
	e := New(t)
	out := os.Getenv("BOXLITE_CRITEST_OUT")
	if out == "" {
		out = filepath.Join(ctrd.BinDir(t), "critest")
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	runc := e.Run(t, "runc", out, 30*time.Minute)
	boxlite := e.Run(t, "boxlite", out, 30*time.Minute)
	c := Compare(runc, boxlite, Exemptions(Engine))
	var b strings.Builder
	c.Print(&b, Engine)
	if err := os.WriteFile(filepath.Join(out, "table.md"), []byte(b.String()), 0o644); err != nil {
		t.Error(err)
	}
	os.Stdout.WriteString(b.String())
	for _, p := range c.Problems() {
		t.Error(p)
	}
	// What the double cannot show, a guest kernel must: the specs of
	// NeedsGuestKernel run again on the emulated engine, and pass.
	var specs []string
	for _, x := range NeedsGuestKernel {
		specs = append(specs, x.Spec)
	}
	eng := e.Run(t, EngineHandler, out, 20*time.Minute, specs...)
	for _, x := range NeedsGuestKernel {
		found := false
		for name, r := range eng {
			if !strings.Contains(name, x.Spec) || r.State == "skipped" {
				continue
			}
			found = true
			t.Logf("on the emulated engine: %s: %s", name, r.State)
			if !r.Passed() {
				t.Errorf("%q fails on the emulated engine (%s: %s): the exemption %q claims a guest kernel passes it", name, r.State, r.Message, "needs a real guest kernel")
			}
		}
		if !found {
			t.Errorf("%q did not run on the emulated engine", x.Spec)
		}
	}
	e.AssertClean(t)
}
