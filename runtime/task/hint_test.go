package task

import (
	"bytes"
	"io"
	"testing"

	"github.com/boxlite/boxlite-shim/runtime/agent"
)

// withTail copies the output streams into the tail, and leaves absent
// streams absent (the agent is asked only for the streams the task has).
func TestWithTail(t *testing.T) {
	for _, tc := range []struct {
		name           string
		stdout, stderr bool
		want           string
	}{
		{"both", true, true, "out1 err1 out2 "},
		{"stdout only (a terminal)", true, false, "out1 out2 "},
		{"none", false, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var o, e bytes.Buffer
			pio := agent.IO{}
			if tc.stdout {
				pio.Stdout = &o
			}
			if tc.stderr {
				pio.Stderr = &e
			}
			got, tail := withTail(pio)
			if (got.Stdout != nil) != tc.stdout || (got.Stderr != nil) != tc.stderr {
				t.Fatalf("streams: stdout %v stderr %v, want %v %v", got.Stdout != nil, got.Stderr != nil, tc.stdout, tc.stderr)
			}
			write := func(w io.Writer, s string) {
				if w != nil {
					if _, err := w.Write([]byte(s)); err != nil {
						t.Fatal(err)
					}
				}
			}
			write(got.Stdout, "out1 ")
			write(got.Stderr, "err1 ")
			write(got.Stdout, "out2 ")
			if s := string(tail.Bytes()); s != tc.want {
				t.Errorf("tail = %q, want %q", s, tc.want)
			}
			if tc.stdout && o.String() != "out1 out2 " || tc.stderr && e.String() != "err1 " {
				t.Errorf("the streams got stdout %q, stderr %q", o.String(), e.String())
			}
		})
	}
}
