package config

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
)

// Error reports what is wrong with a configuration: the file (or other
// source) it came from and every problem found. It matches
// errdefs.ErrInvalidArgument, and also Err (for example fs.ErrNotExist for a
// missing file) when that is set.
type Error struct {
	// Source names where the configuration came from: a file path,
	// SourceOptionsBody or SourceDefaults.
	Source string
	// Problems lists each problem, one sentence each, naming the key, the
	// value and what is accepted.
	Problems []string
	// Err is the underlying cause, if any.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("boxlite config ")
	b.WriteString(e.Source)
	switch len(e.Problems) {
	case 0:
		b.WriteString(": invalid")
	case 1:
		b.WriteString(": ")
		b.WriteString(e.Problems[0])
	default:
		fmt.Fprintf(&b, ": %d problems: ", len(e.Problems))
		b.WriteString(strings.Join(e.Problems, "; "))
	}
	return b.String()
}

// Unwrap lets errors.Is find errdefs.ErrInvalidArgument and Err.
func (e *Error) Unwrap() []error {
	if e.Err != nil {
		return []error{errdefs.ErrInvalidArgument, e.Err}
	}
	return []error{errdefs.ErrInvalidArgument}
}

// invalidError is a one-message error matching errdefs.ErrInvalidArgument.
type invalidError struct{ msg string }

func (e *invalidError) Error() string { return e.msg }
func (e *invalidError) Unwrap() error { return errdefs.ErrInvalidArgument }

func invalidf(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// maxShown bounds how much of a user-supplied string an error message quotes.
const maxShown = 64

// quote quotes s for an error message, cutting it short when it is long.
func quote(s string) string {
	if len(s) <= maxShown {
		return fmt.Sprintf("%q", s)
	}
	// Cut on a rune boundary so %q does not show a torn rune.
	cut := maxShown
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q... (%d bytes)", s[:cut], len(s))
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

func quoteList[T ~string](list []T) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, s := range list {
		if i > 0 {
			b.WriteString(", ")
		}
		if i == 8 {
			fmt.Fprintf(&b, "... (%d items)", len(list))
			break
		}
		b.WriteString(quote(string(s)))
	}
	b.WriteByte(']')
	return b.String()
}
