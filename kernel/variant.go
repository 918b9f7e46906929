// Package kernel owns the guest kernel variants: their names, which ones this
// build embeds (Go build tags kernel_lean, kernel_net), extraction of embedded
// blobs into a content-addressed cache, and the choice of a variant from a
// sandbox's annotations under the configured policy.
//
// It must not start VMs, read configuration files or decide annotation
// allowlists: callers hand it a Policy and the annotations that passed their gates.
package kernel

import (
	"fmt"
	"strings"
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

// Parse turns a variant name into a Name, or says which names exist.
func Parse(s string) (Name, error) {
	for _, n := range Names() {
		if s == string(n) {
			return n, nil
		}
	}
	return "", fmt.Errorf("unknown kernel variant %q: known variants are %s", s, joinNames(Names()))
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
