package vmm

import (
	"fmt"

	"github.com/containerd/errdefs"

	"github.com/boxlite/boxlite-shim/reaper"
	"github.com/boxlite/boxlite-shim/runtime/netns"
)

// startIn runs start (which forks the VMM) on a thread that has entered the
// network namespace at path ns, so that the VMM is born in it; "" = no change.
func startIn(ns string, start func() (*reaper.Process, error)) (*reaper.Process, error) {
	if ns == "" {
		return start()
	}
	var p *reaper.Process
	var startErr error
	if err := netns.In(ns, func() error {
		p, startErr = start()
		return nil
	}); err != nil {
		return nil, fmt.Errorf("vmm: the pod's %w: %w", err, errdefs.ErrFailedPrecondition)
	}
	return p, startErr
}
