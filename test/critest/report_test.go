package critest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestCompare(t *testing.T) {
	r := func(state, msg string) Result { return Result{State: state, Message: msg} }
	runc := map[string]Result{
		"a passes on both":       r("passed", ""),
		"b regresses":            r("passed", ""),
		"c refused as designed":  r("passed", ""),
		"d refused otherwise":    r("passed", ""),
		"e skipped on both":      r("skipped", "no AppArmor"),
		"f fails on runc":        r("failed", "image missing"),
		"g skipped on boxlite":   r("passed", ""),
		"h skipped on runc only": r("skipped", "x"),
		"i needs a guest":        r("passed", ""),
	}
	boxlite := map[string]Result{
		"a passes on both":       r("passed", ""),
		"b regresses":            r("failed", "boom"),
		"c refused as designed":  r("failed", "rpc error: hostNetwork refused: invalid argument"),
		"d refused otherwise":    r("failed", "timeout"),
		"e skipped on both":      r("skipped", "no AppArmor"),
		"f fails on runc":        r("failed", "image missing"),
		"g skipped on boxlite":   r("skipped", "not implemented"),
		"h skipped on runc only": r("passed", ""),
		"i needs a guest":        r("failed", "no memory controller"),
	}
	lists := map[string][]Exemption{
		"by design":  {{Spec: "c refused", Error: "hostNetwork refused"}, {Spec: "d refused", Error: "refused"}, {Spec: "z gone"}},
		"needs more": {{Spec: "i needs"}},
	}
	c := Compare(runc, boxlite, lists)
	for _, tc := range []struct {
		what      string
		got, want []string
	}{
		{"regressions", c.Regressions, []string{"b regresses", "g skipped on boxlite"}},
		{"wrong refusals", c.WrongRefusal, []string{"d refused otherwise"}},
		{"runc not passed", c.RuncNotPassed, []string{"f fails on runc"}},
		{"skip mismatch", c.SkipMismatch, []string{"h skipped on runc only"}},
		{"stale exemptions", c.UnusedExemptions, []string{"by design: z gone"}},
	} {
		if !slices.Equal(tc.got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.what, tc.got, tc.want)
		}
	}
	if e := c.Exempt["i needs a guest"]; e.List != "needs more" {
		t.Errorf("exempt by %+v, want the needs-more list", e)
	}
	if n := len(c.Problems()); n != 5 {
		t.Errorf("%d problems, want 5: %q", n, c.Problems())
	}
	var b strings.Builder
	c.Print(&b, "test engine")
	for _, want := range []string{"boxlite engine: test engine", "| pass | FAIL (by design) | c refused as designed |", "| runc | 6 | 1 | 2 |", "NOT listed (2)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

func TestReadReport(t *testing.T) {
	p := filepath.Join(t.TempDir(), "r.json")
	body := `[{"SpecReports": [
 {"ContainerHierarchyTexts": null, "LeafNodeText": "", "LeafNodeType": "BeforeSuite", "State": "passed"},
 {"ContainerHierarchyTexts": ["[k8s.io] Image", "ctx"], "LeafNodeText": "pulls", "LeafNodeType": "It", "State": "failed", "Failure": {"Message": "boom"}},
 {"ContainerHierarchyTexts": ["[k8s.io] Pod"], "LeafNodeText": "runs", "LeafNodeType": "It", "State": "passed"}]}]`
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadReport(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["[k8s.io] Image ctx pulls"].Message != "boom" || !got["[k8s.io] Pod runs"].Passed() {
		t.Errorf("ReadReport: %+v", got)
	}
	if err := os.WriteFile(p, []byte(`[{"SpecReports": []}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadReport(p); err == nil {
		t.Error("a report with no spec: no error")
	}
}
