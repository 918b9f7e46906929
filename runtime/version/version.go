// Package version holds the shim's build identity, set by the Makefile through
// -ldflags. It must not hold anything else.
package version

var (
	// Version is the release or git describe of this build.
	Version = "0.0.0-dev"
	// Revision is the git commit of this build.
	Revision = "unknown"
)

// Name is the runtime name containerd uses for this shim.
const Name = "io.containerd.boxlite.v2"
