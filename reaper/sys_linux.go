//go:build linux

package reaper

import (
	"errors"
	"os"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// siginfoChild is the siginfo_t the kernel fills in for waitid, restricted to
// the SIGCHLD member of its union (same layout as Go's
// internal/syscall/unix.SiginfoChild).
type siginfoChild struct {
	Signo int32
	f1    int32 // si_errno, or si_code on MIPS
	f2    int32 // si_code, or si_errno on MIPS
	_     [is64bit]int32

	Pid    int32
	Uid    uint32
	Status int32

	_ [128 - (6+is64bit)*4]byte
}

const is64bit = ^uint(0) >> 63

var _ [0]struct{} = [unsafe.Sizeof(siginfoChild{}) - unsafe.Sizeof(unix.Siginfo{})]struct{}{}

func (s *siginfoChild) code() int32 {
	switch runtime.GOARCH {
	case "mips", "mipsle", "mips64", "mips64le":
		return s.f1
	}
	return s.f2
}

// si_code values for SIGCHLD.
const (
	cldExited = 1
	cldKilled = 2
	cldDumped = 3
)

// waitid calls waitid(2), retrying on EINTR. info is zeroed first so that a
// WNOHANG call that finds nothing leaves info.Pid == 0.
func waitid(idType, id int, info *siginfoChild, options int) error {
	if idType == unix.P_ALL || (idType != unix.P_PIDFD && id <= 0) {
		// Guard against ever waiting for all children, or (P_PGID 0) for
		// our own process group.
		panic("reaper: waitid for all children")
	}
	for {
		*info = siginfoChild{}
		err := unix.Waitid(idType, id, (*unix.Siginfo)(unsafe.Pointer(info)), options, nil)
		if err != unix.EINTR {
			return err
		}
	}
}

// wait4 calls wait4(2) for one PID (pid > 0 only), retrying on EINTR.
func wait4(pid int, ws *unix.WaitStatus, options int) (int, error) {
	if pid <= 0 {
		// Guard against ever turning into a wait4(-1) / wait4(0) / wait4(-pgid).
		panic("reaper: wait4 with non-positive pid")
	}
	for {
		wpid, err := unix.Wait4(pid, ws, options, nil)
		if err != unix.EINTR {
			return wpid, err
		}
	}
}

func exitFromSiginfo(info *siginfoChild, now time.Time) Exit {
	e := Exit{Pid: int(info.Pid), Timestamp: now}
	switch info.code() {
	case cldKilled, cldDumped:
		e.Signaled = true
		e.Status = 128 + int(info.Status)
	default:
		e.Status = int(info.Status)
	}
	return e
}

func exitFromWaitStatus(pid int, ws unix.WaitStatus, now time.Time) Exit {
	e := Exit{Pid: pid, Timestamp: now}
	switch {
	case ws.Signaled():
		e.Signaled = true
		e.Status = 128 + int(ws.Signal())
	default:
		e.Status = ws.ExitStatus()
	}
	return e
}

var (
	pidfdOnce sync.Once
	pidfdOK   bool
)

// pidfdWorks reports whether pidfd_open(2) and waitid(P_PIDFD) (Linux 5.4)
// are usable here (they may be missing, or blocked by seccomp).
func pidfdWorks() bool {
	pidfdOnce.Do(func() {
		fd, err := unix.PidfdOpen(os.Getpid(), 0)
		if err != nil {
			return
		}
		defer unix.Close(fd)
		// We are not our own child: a kernel with P_PIDFD says ECHILD,
		// one without it says EINVAL.
		var info siginfoChild
		err = waitid(unix.P_PIDFD, fd, &info, unix.WEXITED|unix.WNOHANG)
		pidfdOK = errors.Is(err, unix.ECHILD)
	})
	return pidfdOK
}

// SetSubreaper makes the calling process a child subreaper
// (PR_SET_CHILD_SUBREAPER): orphaned descendants are reparented to it instead
// of to init, so a registered process group's orphans can be reaped. The
// shim's main gets this from containerd's pkg/shim; this helper is for tests
// and tools. It affects the whole process and cannot be scoped.
func SetSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// IsSubreaper reports whether the calling process is a child subreaper.
func IsSubreaper() (bool, error) {
	var v int32
	err := unix.Prctl(unix.PR_GET_CHILD_SUBREAPER, uintptr(unsafe.Pointer(&v)), 0, 0, 0)
	return v != 0, err
}
