package main

import (
	"fmt"
	"io"
	"testing"
)

// harness lets a program use test/ctrd, whose helpers take a testing.TB:
// Fatal and Skip abort the bench (a panic that run recovers), Cleanup
// functions run in reverse order when the bench ends, Errorf is recorded.
// Only the methods test/ctrd calls are implemented; the embedded nil TB
// stands for the rest (calling one is a bug in this program).
type harness struct {
	testing.TB
	log      io.Writer
	cleanups []func()
	errs     []string
}

// abort is the panic value of Fatal and Skip.
type abort struct{ msg string }

func (h *harness) Helper()          {}
func (h *harness) Name() string     { return "bench" }
func (h *harness) Cleanup(f func()) { h.cleanups = append(h.cleanups, f) }
func (h *harness) Failed() bool     { return len(h.errs) > 0 }
func (h *harness) Logf(format string, args ...any) {
	fmt.Fprintf(h.log, format+"\n", args...)
}
func (h *harness) Errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	h.errs = append(h.errs, msg)
	fmt.Fprintln(h.log, "error:", msg)
}
func (h *harness) Fatal(args ...any) { panic(abort{fmt.Sprint(args...)}) }
func (h *harness) Fatalf(format string, args ...any) {
	panic(abort{fmt.Sprintf(format, args...)})
}
func (h *harness) Skip(args ...any) { panic(abort{fmt.Sprint(args...)}) }

// runCleanups runs the registered cleanups, last first.
func (h *harness) runCleanups() {
	for i := len(h.cleanups) - 1; i >= 0; i-- {
		h.cleanups[i]()
	}
	h.cleanups = nil
}
