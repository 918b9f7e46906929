// Package netns runs code inside a network namespace: on an OS thread that
// has entered one (a pod's, bound at a path by CRI) or a new, empty one. It
// is the piece github.com/vishvananda/netns (namespace handles) and
// github.com/vishvananda/netlink (requests in the calling thread's
// namespace) leave to their callers: locking a thread, entering, running,
// and getting the thread back safely.
//
// It makes no requests of its own: what is done in a namespace belongs to
// the caller (package podnet for a pod's network).
package netns

import (
	"fmt"
	"runtime"

	vns "github.com/vishvananda/netns"
)

// In runs fn on a thread that has entered the network namespace at path,
// and returns its error. The thread goes back to its own namespace
// afterwards, or, if it cannot, ends with fn's goroutine, never to run other
// code.
func In(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		target, err := vns.GetFromPath(path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("network namespace %s: %w", path, err)
			return
		}
		defer target.Close()
		own, err := vns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("own network namespace: %w", err)
			return
		}
		defer own.Close()
		if err := vns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering network namespace %s: %w", path, err)
			return
		}
		ferr := fn()
		if vns.Set(own) == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// InNew runs fn on a thread in a new, empty network namespace, which goes
// away when fn returns (unless fn binds it somewhere): nothing made in it
// outlives fn. The thread goes back to its own namespace afterwards, or, if
// it cannot, ends with fn's goroutine (a thread left in the new namespace
// would otherwise run other code there; and the process's main thread,
// which Go never ends, would stay in it, as /proc/self shows).
func InNew(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		own, err := vns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("own network namespace: %w", err)
			return
		}
		defer own.Close()
		ns, err := vns.New()
		if err != nil {
			if vns.Set(own) == nil {
				runtime.UnlockOSThread()
			}
			errc <- fmt.Errorf("new network namespace: %w", err)
			return
		}
		ns.Close() // the thread holds the namespace; the handle is not needed
		ferr := fn()
		if vns.Set(own) == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}
