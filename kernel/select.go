package kernel

import (
	"github.com/containerd/errdefs"
)

// Select chooses the variant for a sandbox from its annotations (those that
// passed the caller's annotation gates). The Annotation io.boxlite.kernel
// names the variant; absent or empty means p.Default. The value must be a
// known variant, spelled exactly, and allowed by p. Errors match
// errdefs.ErrInvalidArgument and name the value and what is accepted.
//
// Select does not check availability (Locate does) and never substitutes
// one variant for another.
func Select(annotations map[string]string, p Policy) (Name, error) {
	v, ok := annotations[Annotation]
	if !ok || v == "" {
		return Choose("", p)
	}
	n, err := Parse(v)
	if err != nil {
		return "", errorf(errdefs.ErrInvalidArgument, "annotation %s: %w", Annotation, err)
	}
	return Choose(n, p)
}

// Choose is Select for a variant already parsed: asked, or "" for none
// (p.Default then). It checks the variant against p.
func Choose(asked Name, p Policy) (Name, error) {
	if asked == "" {
		if p.Default == "" {
			return "", errorf(errdefs.ErrInvalidArgument, "sandbox has no %s annotation and the configuration sets no default kernel variant; set [kernel] default", Annotation)
		}
		n, err := Parse(string(p.Default))
		if err != nil {
			return "", errorf(errdefs.ErrInvalidArgument, "default kernel variant: %w", err)
		}
		if !p.Allows(n) {
			return "", errorf(errdefs.ErrInvalidArgument, "default kernel variant %s is not allowed by configuration (allowed: %s); add it to [kernel] allowed", n, joinNames(p.Allowed))
		}
		return n, nil
	}
	if !p.Allows(asked) {
		return "", errorf(errdefs.ErrInvalidArgument, "annotation %s: kernel variant %s is not allowed by configuration (allowed: %s); add it to [kernel] allowed", Annotation, asked, joinNames(p.Allowed))
	}
	return asked, nil
}
