package crid

import (
	"fmt"
	"path/filepath"

	"github.com/boxlite/boxlite-shim/test/ctrd"
)

// RuncHandler is CRI config (ExtraCRIConfig) for a "runc" runtime handler on
// the deps cache's runc, driven by containerd's own containerd-shim-runc-v2:
// the baseline the boxlite handlers are compared with.
func RuncHandler() string {
	return fmt.Sprintf(`
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
    BinaryName = %q
`, filepath.Join(ctrd.Deps(), "bin", "runc"))
}
