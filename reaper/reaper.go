//go:build linux

package reaper

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// UnknownStatus is the Status of an Exit whose Unknown field is set.
const UnknownStatus = 255

// Exit is how a registered process ended.
type Exit struct {
	Pid int
	// Status is the exit code, or 128+signal when the process was killed by
	// a signal (containerd convention). UnknownStatus when Unknown is set.
	Status   int
	Signaled bool
	// Unknown is set when the process was reaped by someone else (or did not
	// exist when it was registered): its real status is lost.
	Unknown   bool
	Timestamp time.Time
}

var (
	// ErrClosed is returned by registrations on a closed Reaper.
	ErrClosed = errors.New("reaper: closed")
	// ErrAlreadyRegistered is returned when a live PID or a process group is
	// registered twice.
	ErrAlreadyRegistered = errors.New("reaper: already registered")
	// ErrStdio is returned by Start when cmd.Stdin, cmd.Stdout or cmd.Stderr
	// is neither nil nor an *os.File.
	ErrStdio = errors.New("reaper: Start needs cmd.Stdin, cmd.Stdout and cmd.Stderr to be nil or *os.File (cmd.Wait, which runs the copying goroutines, is never called)")
)

// stashMax bounds how many exits of unregistered group members are kept for
// a later Register of the same PID.
const stashMax = 1024

// Reaper waits for the processes and process groups registered with it, and
// for nothing else. The zero value is not usable; use New or Default.
//
// Locks, always taken in this order: lifeMu (registrations vs Close), startMu
// (Start holds it shared from cmd.Start until the PID is registered; group
// reaping holds it exclusively so that wait4 on a group never takes a child
// that Start has not registered yet), mu (every wait syscall and all the maps).
type Reaper struct {
	usePidfd bool

	lifeMu   sync.RWMutex
	started  bool
	closed   bool
	sigCh    chan os.Signal
	stop     chan struct{}
	loopDone chan struct{}

	startMu sync.RWMutex
	ngroups atomic.Int32

	mu       sync.Mutex
	procs    map[int]*Process
	groups   map[int]*Group
	stash    map[int]stashed
	stashQ   []stashKey
	stashSeq uint64

	// scanOverride replaces the SIGCHLD scan. Tests only: it is how the
	// tests swap in a global wait4(-1) reaper to show what this package
	// prevents.
	scanOverride func()
}

type stashed struct {
	exit Exit
	seq  uint64
}

type stashKey struct {
	pid int
	seq uint64
}

// New returns a Reaper. Its SIGCHLD handling (signal.Notify and one
// goroutine) starts with the first registration.
func New() *Reaper {
	return &Reaper{
		usePidfd: pidfdWorks(),
		procs:    make(map[int]*Process),
		groups:   make(map[int]*Group),
		stash:    make(map[int]stashed),
	}
}

var (
	defaultOnce   sync.Once
	defaultReaper *Reaper
)

// Default returns the process-wide Reaper.
func Default() *Reaper {
	defaultOnce.Do(func() { defaultReaper = New() })
	return defaultReaper
}

// enter starts SIGCHLD handling if needed and returns with lifeMu held for
// reading, or returns ErrClosed.
func (r *Reaper) enter() error {
	for {
		r.lifeMu.RLock()
		if r.closed {
			r.lifeMu.RUnlock()
			return ErrClosed
		}
		if r.started {
			return nil
		}
		r.lifeMu.RUnlock()

		r.lifeMu.Lock()
		if !r.closed && !r.started {
			r.sigCh = make(chan os.Signal, 1)
			// Notify before anything is registered: an exit after this
			// point raises a SIGCHLD we will see, an exit before it is
			// caught by the poll that follows each registration.
			signal.Notify(r.sigCh, unix.SIGCHLD)
			r.stop = make(chan struct{})
			r.loopDone = make(chan struct{})
			r.started = true
			go r.loop(r.sigCh, r.stop, r.loopDone)
		}
		r.lifeMu.Unlock()
	}
}

func (r *Reaper) loop(sig <-chan os.Signal, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for {
		select {
		case <-stop:
			return
		case <-sig:
			r.Reap()
		}
	}
}

// Close stops SIGCHLD handling, polls the registered processes one last
// time, and makes further registrations fail with ErrClosed. Processes still
// running are no longer reaped automatically: their Wait blocks until
// something calls Reap. Close is idempotent.
func (r *Reaper) Close() error {
	r.lifeMu.Lock()
	defer r.lifeMu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	if r.started {
		signal.Stop(r.sigCh)
		close(r.stop)
		<-r.loopDone
		r.Reap()
	}
	return nil
}

// Reap polls every registered process and group once (WNOHANG) and delivers
// the exits it finds. The SIGCHLD goroutine calls it; callers need it only
// after Close or to handle SIGCHLD themselves.
func (r *Reaper) Reap() {
	if r.scanOverride != nil {
		r.scanOverride()
		return
	}
	r.scan()
}

// scan is Reap without the test override.
func (r *Reaper) scan() {
	groups := r.ngroups.Load() > 0
	if groups {
		r.startMu.Lock()
		defer r.startMu.Unlock()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if groups {
		// Only with startMu held: see Reaper.
		for _, g := range r.groups {
			r.reapGroupLocked(g, now)
		}
	}
	for _, p := range r.procs {
		r.reapProcLocked(p, now)
	}
}

// Start starts cmd and registers it, atomically with respect to reaping: an
// immediate exit is not lost, and a registered group that cmd joins cannot
// reap it before its Process exists.
//
// The reaper owns the wait: the caller must NOT call cmd.Wait or
// cmd.Process.Wait (it would fail with ECHILD, or steal the exit from the
// reaper). Use the returned Process instead; cmd.ProcessState stays nil.
//
// Because cmd.Wait never runs, os/exec's stdio copying goroutines would never
// be joined and their pipes never closed: cmd.Stdin, cmd.Stdout and
// cmd.Stderr must be nil or *os.File (Start returns ErrStdio otherwise).
// For output capture, pass the write end of an os.Pipe and close it after
// Start, or use cmd.StdoutPipe/StderrPipe and close the returned reader
// yourself. A cmd made by exec.CommandContext works, but os/exec's context
// watcher goroutine lives until the context is done; prefer Process.Signal.
// After the Process is done, do not signal through cmd.Process on kernels
// without pidfd (the PID may have been recycled); Process.Signal is safe.
func (r *Reaper) Start(cmd *exec.Cmd) (*Process, error) {
	for _, s := range []any{cmd.Stdin, cmd.Stdout, cmd.Stderr} {
		switch s.(type) {
		case nil, *os.File:
		default:
			return nil, ErrStdio
		}
	}
	if err := r.enter(); err != nil {
		return nil, err
	}
	defer r.lifeMu.RUnlock()
	r.startMu.RLock()
	defer r.startMu.RUnlock()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return r.register(cmd.Process.Pid)
}

// Register registers pid, an already-started child of ours that nobody has
// waited for. If it has already exited its exit is delivered at once. If it
// was already reaped by someone else, the Process is done with an Unknown
// exit — except when a registered group reaped it a moment ago, in which case
// that exit is delivered. As with Start, the caller must not wait for pid
// itself. Prefer Start, which cannot race with a registered group.
//
// Where pidfd is not available the process is tracked by PID: if somebody
// else reaps it and the PID is recycled for another child of ours before the
// reaper polls, that child could be taken for it. With pidfd (Linux 5.4+)
// this cannot happen.
func (r *Reaper) Register(pid int) (*Process, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("reaper: invalid pid %d", pid)
	}
	if err := r.enter(); err != nil {
		return nil, err
	}
	defer r.lifeMu.RUnlock()
	return r.register(pid)
}

func (r *Reaper) register(pid int) (*Process, error) {
	p := &Process{r: r, pid: pid, pidfd: -1, done: make(chan struct{})}
	gone := false
	if r.usePidfd {
		fd, err := unix.PidfdOpen(pid, 0)
		switch {
		case err == nil:
			p.pidfd = fd
		case errors.Is(err, unix.ESRCH):
			// A zombie still has a pidfd; ESRCH means it was reaped.
			gone = true
		default:
			// E.g. EMFILE: track this one by PID (wait4(pid)).
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if old := r.procs[pid]; old != nil {
		// Either the same live process, or an older one with the same PID
		// that somebody else reaped: polling it tells which.
		r.reapProcLocked(old, now)
		if r.procs[pid] == old {
			p.closePidfdLocked()
			return nil, ErrAlreadyRegistered
		}
	}

	st := stGone
	var e Exit
	if !gone {
		e, st = p.waitLocked(now)
	}
	switch st {
	case stRunning:
		delete(r.stash, pid) // a live child of ours has this PID: any stashed exit is older
		r.procs[pid] = p
	case stExited:
		delete(r.stash, pid)
		r.deliverLocked(p, e)
	case stGone:
		if s, ok := r.stash[pid]; ok {
			delete(r.stash, pid)
			r.deliverLocked(p, s.exit)
		} else {
			r.deliverLocked(p, unknownExit(pid, now))
		}
	}
	return p, nil
}

// RegisterGroup makes the reaper reap every child of ours in process group
// pgid — including orphans reparented to us because we are a subreaper (see
// SetSubreaper) — until Unregister. A member also registered with Register or
// Start gets its exit delivered to its Process; the others' exits are kept
// briefly in case their PID is registered later. Register only groups whose
// every member is yours: the group of this process itself is refused.
func (r *Reaper) RegisterGroup(pgid int) (*Group, error) {
	if pgid <= 1 {
		return nil, fmt.Errorf("reaper: invalid process group %d", pgid)
	}
	if pgid == unix.Getpgrp() {
		return nil, fmt.Errorf("reaper: refusing to reap our own process group %d", pgid)
	}
	if err := r.enter(); err != nil {
		return nil, err
	}
	defer r.lifeMu.RUnlock()
	r.startMu.Lock()
	defer r.startMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.groups[pgid] != nil {
		return nil, ErrAlreadyRegistered
	}
	g := &Group{r: r, pgid: pgid}
	r.groups[pgid] = g
	r.ngroups.Add(1)
	r.reapGroupLocked(g, time.Now())
	return g, nil
}

// reapGroupLocked reaps every exited child of ours in g. It peeks with
// WNOWAIT and then reaps exactly the PID it saw, so that a registered member
// is reaped through its own pidfd and gets the right exit.
func (r *Reaper) reapGroupLocked(g *Group, now time.Time) {
	for {
		var info siginfoChild
		err := waitid(unix.P_PGID, g.pgid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT)
		if err != nil || info.Pid <= 0 {
			return // ECHILD: no child of ours in the group; Pid 0: none exited
		}
		pid := int(info.Pid)
		if p := r.procs[pid]; p != nil {
			r.reapProcLocked(p, now)
			if p.delivered && !p.exit.Unknown {
				continue
			}
			// p was an older process with this PID that somebody else
			// reaped; the zombie we saw is another one. Reap it below.
		}
		// pid is an unreaped zombie child of ours: it cannot be recycled
		// before we reap it, and we hold mu, so this takes exactly it.
		var ws unix.WaitStatus
		wpid, err := wait4(pid, &ws, unix.WNOHANG)
		if err != nil || wpid != pid {
			return
		}
		r.stashLocked(exitFromWaitStatus(pid, ws, now))
	}
}

func (r *Reaper) stashLocked(e Exit) {
	r.stashSeq++
	r.stash[e.Pid] = stashed{exit: e, seq: r.stashSeq}
	r.stashQ = append(r.stashQ, stashKey{pid: e.Pid, seq: r.stashSeq})
	for len(r.stashQ) > stashMax {
		k := r.stashQ[0]
		r.stashQ = r.stashQ[1:]
		if s, ok := r.stash[k.pid]; ok && s.seq == k.seq {
			delete(r.stash, k.pid)
		}
	}
}

func (r *Reaper) reapProcLocked(p *Process, now time.Time) {
	if p.delivered {
		return
	}
	switch e, st := p.waitLocked(now); st {
	case stExited:
		r.deliverLocked(p, e)
	case stGone:
		r.deliverLocked(p, unknownExit(p.pid, now))
	}
}

func (r *Reaper) deliverLocked(p *Process, e Exit) {
	if p.delivered {
		return
	}
	p.exit = e
	p.delivered = true
	p.closePidfdLocked()
	if r.procs[p.pid] == p {
		delete(r.procs, p.pid)
	}
	close(p.done)
}

func unknownExit(pid int, now time.Time) Exit {
	return Exit{Pid: pid, Status: UnknownStatus, Unknown: true, Timestamp: now}
}

type waitState int

const (
	stRunning waitState = iota
	stExited
	stGone // not (or no longer) a child of ours: reaped by someone else
)

// Process is a process registered with a Reaper.
type Process struct {
	r   *Reaper
	pid int

	// Guarded by r.mu.
	pidfd     int
	delivered bool

	exit Exit // written once, before done is closed
	done chan struct{}
}

// waitLocked polls p once with WNOHANG. Called with r.mu held.
func (p *Process) waitLocked(now time.Time) (Exit, waitState) {
	if p.pidfd >= 0 {
		var info siginfoChild
		err := waitid(unix.P_PIDFD, p.pidfd, &info, unix.WEXITED|unix.WNOHANG)
		switch {
		case err == nil && info.Pid == 0:
			return Exit{}, stRunning
		case err == nil:
			e := exitFromSiginfo(&info, now)
			e.Pid = p.pid
			return e, stExited
		case errors.Is(err, unix.ECHILD):
			return Exit{}, stGone
		}
		// Unexpected (EINVAL, EBADF): fall back to the PID. The process
		// is ours and unreaped or ECHILD will say otherwise.
		p.closePidfdLocked()
	}
	var ws unix.WaitStatus
	wpid, err := wait4(p.pid, &ws, unix.WNOHANG)
	switch {
	case err == nil && wpid == 0:
		return Exit{}, stRunning
	case err == nil && wpid == p.pid:
		return exitFromWaitStatus(p.pid, ws, now), stExited
	default:
		return Exit{}, stGone
	}
}

func (p *Process) closePidfdLocked() {
	if p.pidfd >= 0 {
		unix.Close(p.pidfd)
		p.pidfd = -1
	}
}

// Pid returns the process ID.
func (p *Process) Pid() int { return p.pid }

// Wait blocks until the process has exited and been reaped (or found reaped
// by someone else, see Exit.Unknown) and returns how it ended.
func (p *Process) Wait() Exit {
	<-p.done
	return p.exit
}

// Done is closed when the exit is known.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exit returns the exit and true if it is known, without blocking.
func (p *Process) Exit() (Exit, bool) {
	select {
	case <-p.done:
		return p.exit, true
	default:
		return Exit{}, false
	}
}

// Signal sends sig to the process, through its pidfd where there is one. It
// returns os.ErrProcessDone once the process has been reaped, so a recycled
// PID is never signalled.
func (p *Process) Signal(sig unix.Signal) error {
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	if p.delivered {
		return os.ErrProcessDone
	}
	var err error
	if p.pidfd >= 0 {
		err = unix.PidfdSendSignal(p.pidfd, sig, nil, 0)
	} else {
		err = unix.Kill(p.pid, sig)
	}
	if errors.Is(err, unix.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

// Group is a process group registered with a Reaper.
type Group struct {
	r    *Reaper
	pgid int
	once sync.Once
}

// Pgid returns the process group ID.
func (g *Group) Pgid() int { return g.pgid }

// Unregister stops reaping the group's members (registered Processes in it
// are still reaped). It is idempotent.
func (g *Group) Unregister() {
	g.once.Do(func() {
		g.r.mu.Lock()
		defer g.r.mu.Unlock()
		if g.r.groups[g.pgid] == g {
			delete(g.r.groups, g.pgid)
			g.r.ngroups.Add(-1)
		}
	})
}
