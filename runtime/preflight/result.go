// Package preflight owns the node checks an operator runs before using the
// shim (`containerd-shim-boxlite-v2 check`): KVM, libkrun, the configured
// kernels, and whether guests boot. It reports; it must not change the host.
package preflight

import (
	"fmt"
	"io"
)

// Status is the outcome of one check.
type Status int

const (
	Pass Status = iota
	// Warn: the check ran but found something that stops guests booting
	// or weakens the node (it fails the preflight too).
	Warn
	Fail
	// Skip: the check could not run because an earlier one failed.
	Skip
	// Info: a fact about the node that neither passes nor fails it (the
	// test engine's availability).
	Info
)

func (s Status) String() string {
	return [...]string{"ok", "warn", "FAIL", "skip", "info"}[s]
}

// Result is one line of the report.
type Result struct {
	Name   string
	Status Status
	Detail string
	// Fix says what to do when Status is not Pass.
	Fix string
}

// Print writes the report and returns whether every check passed (Info
// lines count for neither).
func Print(w io.Writer, results []Result) bool {
	ok := true
	for _, r := range results {
		fmt.Fprintf(w, "%-7s %-12s %s\n", "["+r.Status.String()+"]", r.Name, r.Detail)
		if r.Status != Pass && r.Status != Info {
			ok = false
			if r.Fix != "" {
				fmt.Fprintf(w, "%-7s %-12s -> %s\n", "", "", r.Fix)
			}
		}
	}
	return ok
}
