package vmm

import (
	"fmt"
	"runtime"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/boxlite/boxlite-shim/reaper"
)

// startIn runs start (which forks the VMM) on a thread that has entered the
// network namespace at netns, so that the VMM is born in it; "" = no change.
// The thread returns to its namespace afterwards, or is never reused.
func startIn(netns string, start func() (*reaper.Process, error)) (*reaper.Process, error) {
	if netns == "" {
		return start()
	}
	target, err := unix.Open(netns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("vmm: the pod's network namespace %s: %w: %w", netns, err, errdefs.ErrFailedPrecondition)
	}
	defer unix.Close(target)
	runtime.LockOSThread()
	own, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("vmm: own network namespace: %w", err)
	}
	defer unix.Close(own)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("vmm: entering the pod's network namespace %s: %w: %w", netns, err, errdefs.ErrFailedPrecondition)
	}
	p, startErr := start()
	if err := unix.Setns(own, unix.CLONE_NEWNET); err != nil {
		// This thread stays in the pod's namespace: it ends with the
		// goroutine (no UnlockOSThread), never to run other code.
		return p, startErr
	}
	runtime.UnlockOSThread()
	return p, startErr
}
