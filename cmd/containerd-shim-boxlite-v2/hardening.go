package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/boxlite/boxlite-shim/kernel"
	"github.com/boxlite/boxlite-shim/runtime/preflight"
)

// printHardening writes, after the kernels table, one row per variant whose
// blob could be read: the state of each hardening capability
// (kernel.HardeningNames) and where the answer comes from (the blob's
// embedded config, else its kallsyms symbol table). A variant that cannot be
// booted has no row; the kernels table already says why.
func printHardening(w io.Writer, rows []preflight.KernelRow) {
	names := kernel.HardeningNames()
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := []string{"VARIANT"}
	for _, n := range names {
		header = append(header, strings.ToUpper(n))
	}
	header = append(header, "FROM")
	fmt.Fprintln(w)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		if r.Err != nil {
			continue
		}
		cells := []string{string(r.Name)}
		caps, err := kernel.InspectCapabilities(r.Source.Path)
		if err != nil {
			for range names {
				cells = append(cells, "-")
			}
			cells = append(cells, err.Error())
		} else {
			for _, n := range names {
				cells = append(cells, caps.State(n).String())
			}
			cells = append(cells, caps.Method)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
}
