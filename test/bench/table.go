package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// printTable writes the report as a table, then the errors and leftovers.
func printTable(w io.Writer, rep *Report) {
	fmt.Fprintf(w, "boxlite shim vs runc, %s\n", rep.Started.Format("2006-01-02 15:04 UTC"))
	if rep.Host["shim"] != "" {
		fmt.Fprintf(w, "shim: %s; %s; %s; %s CPUs, Linux %s\n",
			rep.Host["shim"], rep.Host["runc"], rep.Host["containerd"], rep.Host["cpus"], rep.Host["kernel"])
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FIGURE\tRUNTIME\tN\tMEDIAN\tMIN–MAX\tP10–P90\tFAILED\tVS RUNC\tTARGET")
	for _, r := range rep.Rows {
		rt := r.Runtime + labelMark(r.Label)
		if r.NotMeasured != "" {
			// The reason is the line's last cell, outside the columns.
			fmt.Fprintf(tw, "%s\t%s\t-\tnot measured\t\t\t\t\t\t%s\n", r.Figure, rt, r.NotMeasured)
			continue
		}
		s := r.Summary
		failed := ""
		if r.Failures != nil {
			failed = fmt.Sprintf("%d/%d", *r.Failures, r.Attempts)
		}
		ratio := ""
		if r.RatioToRunc > 0 {
			ratio = fmt.Sprintf("%.2f×", r.RatioToRunc)
		}
		target := ""
		if r.TargetMet != nil {
			target = r.Target + ": "
			if *r.TargetMet {
				target += "met"
			} else {
				target += "NOT met"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Figure, rt, s.N,
			format(s.Median, r.Unit), span(s.Min, s.Max, r.Unit), span(s.P10, s.P90, r.Unit), failed, ratio, target)
	}
	tw.Flush()
	labels := map[string]bool{}
	for _, r := range rep.Rows {
		labels[r.Label] = true
	}
	if labels[doubleLabel] {
		fmt.Fprintf(w, "%s %s: where no guest can boot, the boxlite figures are the shim, VMM process and guest agent, with the agent a host process.\n", labelMark(doubleLabel), doubleLabel)
	}
	if labels[emuLabel] {
		fmt.Fprintf(w, "%s %s: a real guest booted by the emulated engine (test/libkrun-qemu) under QEMU's TCG, every instruction translated in software; no VS RUNC ratio.\n", labelMark(emuLabel), emuLabel)
	}
	var notes []string
	seen := map[string]bool{}
	for _, r := range rep.Rows {
		if r.Note != "" && !seen[r.Note] {
			seen[r.Note] = true
			notes = append(notes, fmt.Sprintf("  %s: %s", r.Figure, r.Note))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w, "notes:")
		fmt.Fprintln(w, strings.Join(notes, "\n"))
	}
	fmt.Fprintf(w, "took %.0f s; load average before %s, after %s\n", rep.Seconds, rep.Host["loadavg_before"], rep.Host["loadavg_after"])
	for _, e := range rep.Errors {
		fmt.Fprintln(w, "ERROR:", e)
	}
	for _, l := range rep.Leftovers {
		fmt.Fprintln(w, "LEFT BEHIND:", l)
	}
}

// labelMark is the mark of a row's label after its runtime, explained
// below the table.
func labelMark(label string) string {
	switch label {
	case "":
		return ""
	case emuLabel:
		return "†"
	default:
		return "*"
	}
}

// span formats a range, "12–15 ms", with the unit once when both ends
// share it.
func span(lo, hi float64, unit string) string {
	l, h := format(lo, unit), format(hi, unit)
	li, hi2 := strings.LastIndexByte(l, ' '), strings.LastIndexByte(h, ' ')
	if li > 0 && hi2 > 0 && l[li:] == h[hi2:] {
		l = l[:li]
	}
	return l + "–" + h
}
