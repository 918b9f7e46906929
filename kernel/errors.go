package kernel

import (
	"fmt"
	"unicode/utf8"
)

// kindError is an error with a clean message that also matches an errdefs
// kind (and whatever its message wraps with %w) under errors.Is.
type kindError struct {
	err  error
	kind error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

// errorf formats an error that matches kind; %w in format wraps a cause.
func errorf(kind error, format string, args ...any) error {
	return &kindError{err: fmt.Errorf(format, args...), kind: kind}
}

// maxShown bounds how much of a caller-supplied string a message quotes.
const maxShown = 64

// quote quotes s for a message, cutting it short when it is long.
func quote(s string) string {
	if len(s) <= maxShown {
		return fmt.Sprintf("%q", s)
	}
	cut := maxShown
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q... (%d bytes)", s[:cut], len(s))
}
