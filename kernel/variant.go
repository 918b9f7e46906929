// Package kernel owns the guest kernel variants: their names, which ones this
// build embeds (Go build tags kernel_lean, kernel_net; see embed_*.go and
// kernel/pack), extraction and SHA-256 verification of embedded blobs into a
// content-addressed cache, locating a variant's file (a configured path wins
// over the embedded blob), the choice of a variant from a sandbox's
// annotations under the configured policy, and what a blob's guest kernel
// offers (Inspect, InspectCapabilities: its embedded config, else strings or
// the kallsyms table of the uncompressed image; Inspect also tells
// libkrunfw's TSI patch and the most CPUs the kernel brings up).
//
// It never substitutes one variant for another: a variant that is not allowed
// or not available is an error that says what is available and what to change.
//
// It must not start VMs, read configuration files or decide annotation
// allowlists: callers hand it a Policy and the annotations that passed their gates.
package kernel

import (
	"strings"

	"github.com/containerd/errdefs"
)

// Name names a kernel variant. Variants are named, never paths.
type Name string

const (
	// Lean is the stock libkrunfw kernel: nf_tables, NAT, bridge, NET_NS.
	Lean Name = "lean"
	// Net is lean plus xtables (legacy iptables/ip6tables, NFT_COMPAT, the
	// xt matches and targets dockerd needs).
	Net Name = "net"
)

// Annotation is the sandbox annotation that chooses a variant.
const Annotation = "io.boxlite.kernel"

// Names lists every variant this project knows, in a stable order.
func Names() []Name { return []Name{Lean, Net} }

// Parse turns a variant name into a Name, or says which names exist. Names
// match exactly: no case folding, no trimming. The error matches
// errdefs.ErrInvalidArgument.
func Parse(s string) (Name, error) {
	for _, n := range Names() {
		if s == string(n) {
			return n, nil
		}
	}
	return "", errorf(errdefs.ErrInvalidArgument, "unknown kernel variant %s: known variants are %s", quote(s), joinNames(Names()))
}

func joinNames(names []Name) string {
	if len(names) == 0 {
		return "(none)"
	}
	s := make([]string, len(names))
	for i, n := range names {
		s[i] = string(n)
	}
	return strings.Join(s, ", ")
}

// Policy is what configuration says about kernels.
type Policy struct {
	// Default is the variant a sandbox gets when it does not ask for one.
	Default Name
	// Allowed lists the variants sandboxes may ask for.
	Allowed []Name
	// Paths gives, per variant, a libkrunfw-ABI file on disk. A configured
	// path is used instead of the embedded blob (distro-packaging mode).
	Paths map[Name]string
}

// Allows reports whether the policy lets sandboxes use n. An empty Allowed
// allows nothing.
func (p Policy) Allows(n Name) bool {
	for _, a := range p.Allowed {
		if a == n {
			return true
		}
	}
	return false
}
