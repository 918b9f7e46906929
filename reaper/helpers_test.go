//go:build linux

package reaper

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// helperEnv, when set, makes the test binary run runHelper instead of the
// tests (see TestOrphanInRegisteredGroupIsReaped): the helper process becomes
// a subreaper without affecting this one.
const helperEnv = "REAPER_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		if err := runOrphanHelper(mode); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// mode is how a Reaper tracks a registered PID.
type mode struct {
	name     string
	usePidfd bool
}

var modes = []mode{
	{name: "pidfd", usePidfd: true},
	{name: "wait4pid", usePidfd: false},
}

// newTestReaper returns a Reaper in mode m, closed at the end of the test.
func newTestReaper(t *testing.T, m mode) *Reaper {
	t.Helper()
	if m.usePidfd && !pidfdWorks() {
		t.Skip("this kernel lacks pidfd_open/waitid(P_PIDFD)")
	}
	r := New()
	r.usePidfd = m.usePidfd
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// countScans wraps r's SIGCHLD scan (real or override) to count completed
// scans. Set before the first registration.
func countScans(r *Reaper) *atomic.Int64 {
	var n atomic.Int64
	inner := r.scanOverride
	if inner == nil {
		inner = r.scan
	}
	r.scanOverride = func() {
		inner()
		n.Add(1)
	}
	return &n
}

// globalReap is containerd's default reaper, the behaviour this package
// exists to replace: on SIGCHLD it reaps every exited child with
// wait4(-1, WNOHANG) and routes the ones it knows. Tests swap it in (through
// scanOverride) to show that they really detect stolen exit statuses.
func globalReap(r *Reaper) {
	now := time.Now()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		r.mu.Lock()
		if p := r.procs[pid]; p != nil {
			r.deliverLocked(p, exitFromWaitStatus(pid, ws, now))
		}
		r.mu.Unlock()
	}
}

// reaperKind is the SIGCHLD handling under test: the scoped one of this
// package, or the global wait4(-1) one that the tests must catch.
type reaperKind struct {
	name       string
	new        func(t *testing.T) *Reaper
	wantECHILD bool // unregistered children lose their exit status
}

var reaperKinds = []reaperKind{
	{name: "scoped", new: func(t *testing.T) *Reaper { return newTestReaper(t, modes[0]) }},
	{name: "scoped-wait4pid", new: func(t *testing.T) *Reaper { return newTestReaper(t, modes[1]) }},
	{name: "global-wait4(-1)", wantECHILD: true, new: func(t *testing.T) *Reaper {
		r := newTestReaper(t, modes[1])
		r.scanOverride = func() { globalReap(r) }
		return r
	}},
}

// procStat returns the state letter and parent PID of pid from
// /proc/<pid>/stat; ok is false when the process does not exist (reaped).
func procStat(pid int) (state byte, ppid int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+4 >= len(b) {
		return 0, 0, false
	}
	f := bytes.Fields(b[i+2:])
	if len(f) < 2 {
		return 0, 0, false
	}
	ppid, _ = strconv.Atoi(string(f[1]))
	return f[0][0], ppid, true
}

// isOurZombie reports whether pid is an unreaped zombie child of this process.
func isOurZombie(pid int) bool {
	st, ppid, ok := procStat(pid)
	return ok && st == 'Z' && ppid == os.Getpid()
}

// ourZombies lists every zombie child of this process.
func ourZombies(t *testing.T) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var zs []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if isOurZombie(pid) {
			zs = append(zs, pid)
		}
	}
	return zs
}

// eventually polls cond every few milliseconds for up to d.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitZombie waits until pid, a child of ours, has exited and is a zombie.
func waitZombie(t *testing.T, pid int) {
	t.Helper()
	if !eventually(5*time.Second, func() bool { return isOurZombie(pid) }) {
		st, ppid, ok := procStat(pid)
		t.Fatalf("pid %d did not become our zombie: state %q ppid %d exists %v", pid, st, ppid, ok)
	}
}

// waitExit waits for p with a timeout, so a lost exit fails instead of hanging.
func waitExit(t *testing.T, p *Process) Exit {
	t.Helper()
	select {
	case <-p.Done():
		e, ok := p.Exit()
		if !ok {
			t.Fatalf("pid %d: Done closed but Exit not available", p.Pid())
		}
		if w := p.Wait(); w != e {
			t.Fatalf("pid %d: Wait %+v != Exit %+v", p.Pid(), w, e)
		}
		return e
	case <-time.After(10 * time.Second):
		t.Fatalf("pid %d: no exit delivered", p.Pid())
		return Exit{}
	}
}

// assertReaped checks that pid is not left as a zombie of ours.
func assertReaped(t *testing.T, pid int) {
	t.Helper()
	if isOurZombie(pid) {
		t.Fatalf("pid %d left as a zombie", pid)
	}
}

// startUnregistered starts cmd outside the reaper and makes sure it does not
// outlive the test.
func startUnregistered(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
}

func isECHILD(err error) bool { return errors.Is(err, unix.ECHILD) }
