package critest

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Result is one spec's outcome in a critest run (ginkgo's JSON report).
type Result struct {
	Spec    string // container texts and the leaf text, joined by spaces
	State   string // passed, failed, skipped, pending, panicked, timedout, ...
	Message string // the failure or skip message
}

// Passed says whether the spec passed.
func (r Result) Passed() bool { return r.State == "passed" }

// ReadReport reads a ginkgo JSON report (-ginkgo.json-report) and returns
// its specs (It nodes only, not the suite's setup nodes) by name.
func ReadReport(path string) (map[string]Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var suites []struct {
		SpecReports []struct {
			ContainerHierarchyTexts []string
			LeafNodeText            string
			LeafNodeType            string
			State                   string
			Failure                 *struct{ Message string }
		}
	}
	if err := json.Unmarshal(b, &suites); err != nil {
		return nil, fmt.Errorf("ginkgo report %s: %w", path, err)
	}
	out := map[string]Result{}
	for _, s := range suites {
		for _, r := range s.SpecReports {
			if r.LeafNodeType != "It" {
				continue
			}
			name := strings.Join(append(append([]string{}, r.ContainerHierarchyTexts...), r.LeafNodeText), " ")
			res := Result{Spec: name, State: r.State}
			if r.Failure != nil {
				res.Message = r.Failure.Message
			}
			out[name] = res
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("ginkgo report %s lists no spec", path)
	}
	return out, nil
}

// Exemption is a spec that passes on runc and may not pass on boxlite.
type Exemption struct {
	// Spec is a substring of the spec's name.
	Spec string
	// Why boxlite does not pass it.
	Why string
	// Error, when set, must appear in boxlite's failure: the refusal is
	// the clear error the README promises, not some other failure.
	Error string
}

// Comparison is the outcome of both handlers' runs.
type Comparison struct {
	Specs   []string // every spec, sorted
	Runc    map[string]Result
	Boxlite map[string]Result
	// RuncNotPassed are specs runc did not pass and did not skip: the
	// harness (images, config) or the host is at fault.
	RuncNotPassed []string
	// Regressions pass on runc and not on boxlite, exempt by nothing.
	Regressions []string
	// Exempt pass on runc and not on boxlite, by an exemption (the list
	// name and the exemption).
	Exempt map[string]ExemptBy
	// WrongRefusal are exempt specs whose failure is not the expected
	// refusal.
	WrongRefusal []string
	// UnusedExemptions name exemptions that matched no spec failing on
	// boxlite (the spec now passes, or was renamed): the list is stale.
	UnusedExemptions []string
	// SkipMismatch are specs skipped on one handler and not the other.
	SkipMismatch []string
}

// ExemptBy says which list exempts a spec.
type ExemptBy struct {
	List string
	Exemption
}

// Compare puts both runs side by side. lists maps a list's name ("by
// design", ...) to its exemptions.
func Compare(runc, boxlite map[string]Result, lists map[string][]Exemption) *Comparison {
	c := &Comparison{Runc: runc, Boxlite: boxlite, Exempt: map[string]ExemptBy{}}
	seen := map[string]bool{}
	for n := range runc {
		seen[n] = true
	}
	for n := range boxlite {
		seen[n] = true
	}
	for n := range seen {
		c.Specs = append(c.Specs, n)
	}
	sort.Strings(c.Specs)
	used := map[string]bool{}
	listNames := make([]string, 0, len(lists))
	for l := range lists {
		listNames = append(listNames, l)
	}
	sort.Strings(listNames)
	for _, n := range c.Specs {
		r, b := runc[n], boxlite[n]
		if (r.State == "skipped") != (b.State == "skipped") && !(r.Passed() && b.State == "skipped") {
			c.SkipMismatch = append(c.SkipMismatch, n)
		}
		if !r.Passed() && r.State != "skipped" {
			c.RuncNotPassed = append(c.RuncNotPassed, n)
		}
		if !r.Passed() || b.Passed() {
			continue
		}
		var by *ExemptBy
		for _, l := range listNames {
			for _, e := range lists[l] {
				if strings.Contains(n, e.Spec) {
					by = &ExemptBy{List: l, Exemption: e}
					used[l+"\x00"+e.Spec] = true
				}
			}
		}
		if by == nil {
			c.Regressions = append(c.Regressions, n)
			continue
		}
		c.Exempt[n] = *by
		if by.Error != "" && !strings.Contains(b.Message, by.Error) {
			c.WrongRefusal = append(c.WrongRefusal, n)
		}
	}
	for _, l := range listNames {
		for _, e := range lists[l] {
			if !used[l+"\x00"+e.Spec] {
				c.UnusedExemptions = append(c.UnusedExemptions, l+": "+e.Spec)
			}
		}
	}
	return c
}

// Counts are a run's totals.
type Counts struct{ Passed, Failed, Skipped int }

func count(rs map[string]Result) Counts {
	var c Counts
	for _, r := range rs {
		switch {
		case r.Passed():
			c.Passed++
		case r.State == "skipped":
			c.Skipped++
		default:
			c.Failed++
		}
	}
	return c
}

func mark(r Result) string {
	switch r.State {
	case "passed":
		return "pass"
	case "skipped":
		return "skip"
	case "":
		return "-"
	}
	return "FAIL"
}

// Print writes the side-by-side table, the totals and the lists.
func (c *Comparison) Print(w io.Writer, engine string) {
	fmt.Fprintf(w, "critest: runc vs boxlite (boxlite engine: %s)\n\n", engine)
	fmt.Fprintf(w, "| runc | boxlite | spec |\n| --- | --- | --- |\n")
	for _, n := range c.Specs {
		r, b := c.Runc[n], c.Boxlite[n]
		note := ""
		if e, ok := c.Exempt[n]; ok {
			note = " (" + e.List + ")"
		}
		fmt.Fprintf(w, "| %s | %s%s | %s |\n", mark(r), mark(b), note, n)
	}
	rc, bc := count(c.Runc), count(c.Boxlite)
	fmt.Fprintf(w, "\n| handler | passed | failed | skipped |\n| --- | --- | --- | --- |\n")
	fmt.Fprintf(w, "| runc | %d | %d | %d |\n| boxlite | %d | %d | %d |\n", rc.Passed, rc.Failed, rc.Skipped, bc.Passed, bc.Failed, bc.Skipped)
	section := func(title string, names []string, detail func(string) string) {
		if len(names) == 0 {
			return
		}
		fmt.Fprintf(w, "\n%s (%d):\n", title, len(names))
		for _, n := range names {
			fmt.Fprintf(w, "  - %s\n", n)
			if d := detail(n); d != "" {
				fmt.Fprintf(w, "      %s\n", d)
			}
		}
	}
	firstLine := func(m string) string {
		m = strings.TrimSpace(m)
		if i := strings.IndexByte(m, '\n'); i >= 0 {
			m = m[:i]
		}
		if len(m) > 300 {
			m = m[:300] + "..."
		}
		return m
	}
	var exempt []string
	for n := range c.Exempt {
		exempt = append(exempt, n)
	}
	sort.Strings(exempt)
	section("pass on runc, not on boxlite, listed", exempt, func(n string) string {
		e := c.Exempt[n]
		return e.List + ": " + e.Why + " | boxlite: " + firstLine(c.Boxlite[n].Message)
	})
	section("pass on runc, not on boxlite, NOT listed", c.Regressions, func(n string) string { return firstLine(c.Boxlite[n].Message) })
	section("listed, but boxlite failed otherwise than by the expected refusal", c.WrongRefusal, func(n string) string {
		return "want " + fmt.Sprintf("%q", c.Exempt[n].Error) + " in: " + firstLine(c.Boxlite[n].Message)
	})
	section("not passed on runc (harness or host)", c.RuncNotPassed, func(n string) string { return firstLine(c.Runc[n].Message) })
	section("skipped on one handler only", c.SkipMismatch, func(n string) string {
		return "runc: " + mark(c.Runc[n]) + ", boxlite: " + mark(c.Boxlite[n]) + " " + firstLine(c.Boxlite[n].Message)
	})
	section("exemptions that matched nothing (stale)", c.UnusedExemptions, func(string) string { return "" })
}

// Problems lists why the comparison fails (empty when it passes).
func (c *Comparison) Problems() []string {
	var p []string
	if n := len(c.Regressions); n > 0 {
		p = append(p, fmt.Sprintf("%d spec(s) pass on runc and not on boxlite, outside the exemption lists", n))
	}
	if n := len(c.WrongRefusal); n > 0 {
		p = append(p, fmt.Sprintf("%d exempt spec(s) failed on boxlite without the expected refusal", n))
	}
	if n := len(c.RuncNotPassed); n > 0 {
		p = append(p, fmt.Sprintf("%d spec(s) did not pass on runc: the harness or the host is at fault", n))
	}
	if n := len(c.SkipMismatch); n > 0 {
		p = append(p, fmt.Sprintf("%d spec(s) skipped on one handler only", n))
	}
	if n := len(c.UnusedExemptions); n > 0 {
		p = append(p, fmt.Sprintf("%d exemption(s) matched no failing spec: remove them", n))
	}
	return p
}
