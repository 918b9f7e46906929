package guest

import (
	"errors"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// reaper collects every child of the agent with wait4(-1). That is right
// here, and only here: the agent is the guest's init (or a child subreaper on
// a host) and owns every process under it; nothing else in this program waits
// for a child. Exits are routed to the handler registered for the PID.
//
// A child is forked with the fork lock held for reading and registered before
// the lock is released; the reaper takes it for writing around wait4, so it
// never collects a child that is not registered yet. Processes the agent
// did not start itself (orphans reparented to it) are reaped and forgotten.
type reaper struct {
	forkMu sync.RWMutex

	mu       sync.Mutex
	handlers map[int]func(status int, at time.Time)
}

func newReaper() *reaper {
	r := &reaper{handlers: map[int]func(int, time.Time){}}
	ch := make(chan os.Signal, 16)
	signal.Notify(ch, syscall.SIGCHLD)
	go func() {
		tick := time.NewTicker(2 * time.Second) // in case a SIGCHLD is coalesced away
		defer tick.Stop()
		for {
			select {
			case <-ch:
			case <-tick.C:
			}
			r.reap()
		}
	}()
	return r
}

type exit struct {
	pid, status int
}

func (r *reaper) reap() {
	var exits []exit
	at := time.Now()
	r.forkMu.Lock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			break
		}
		exits = append(exits, exit{pid, exitStatus(ws)})
	}
	r.forkMu.Unlock()
	for _, e := range exits {
		r.mu.Lock()
		h := r.handlers[e.pid]
		delete(r.handlers, e.pid)
		r.mu.Unlock()
		if h != nil {
			h(e.status, at)
		}
	}
}

// exitStatus is the shell's convention: the code, or 128+signal.
func exitStatus(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// forkLock must be held (see lockFork) from before a fork until its child is
// registered.
func (r *reaper) lockFork()   { r.forkMu.RLock() }
func (r *reaper) unlockFork() { r.forkMu.RUnlock() }

// register routes the exit of pid to h. Call it with the fork lock held, or
// for a PID that cannot have been reaped yet (a grandchild whose parent, the
// agent's child, is still alive).
func (r *reaper) register(pid int, h func(status int, at time.Time)) {
	r.mu.Lock()
	r.handlers[pid] = h
	r.mu.Unlock()
}

// forkExec starts a child and registers it, atomically with respect to
// reaping.
func (r *reaper) forkExec(path string, argv []string, attr *syscall.ProcAttr, h func(status int, at time.Time)) (int, error) {
	r.lockFork()
	defer r.unlockFork()
	pid, err := syscall.ForkExec(path, argv, attr)
	if err != nil {
		return 0, err
	}
	r.register(pid, h)
	return pid, nil
}
