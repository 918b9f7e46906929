package guest

import (
	"errors"
	"fmt"
	"log"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Role is what the agent is to the guest, which decides what it sets up.
type Role int

const (
	// RoleInit: the agent is the guest's init (PID 1): it does the init's
	// mounts and, as PID 1, reaps every orphan of the guest.
	RoleInit Role = iota
	// RoleInitChild: the agent is the workload of the guest's init, not
	// PID 1: what libkrun's init (init.krun) runs, and what the libkrun
	// test double's stand-in for it runs. init.krun mounts /dev, /proc,
	// /sys, /sys/fs/cgroup, /dev/pts and /dev/shm, makes / rshared and
	// leaves /tmp alone, and it waits only for its own child: the agent
	// does the mounts that are missing (/tmp, a tmpfs), makes / rslave,
	// and becomes a child subreaper so that its containers' orphans are
	// reparented to it, not to init.
	RoleInitChild
	// RolePlain: neither (a host process, -init no): no mounts; a child
	// subreaper.
	RolePlain
)

func (r Role) String() string {
	switch r {
	case RoleInit:
		return "the guest's init (PID 1)"
	case RoleInitChild:
		return "the workload of the guest's init"
	default:
		return "a plain process (no init duties)"
	}
}

// DecideRole maps the agent's -init mode to its role, given its PID and its
// parent's in its own PID namespace: "auto" is RoleInit as PID 1,
// RoleInitChild as a child of PID 1 (the guest's init: libkrun's init, or
// the test double's), RolePlain otherwise; "yes" is RoleInit as PID 1,
// RoleInitChild otherwise; "no" is RolePlain.
func DecideRole(mode string, pid, ppid int) (Role, error) {
	switch mode {
	case "auto":
		switch {
		case pid == 1:
			return RoleInit, nil
		case ppid == 1:
			return RoleInitChild, nil
		default:
			return RolePlain, nil
		}
	case "yes":
		if pid == 1 {
			return RoleInit, nil
		}
		return RoleInitChild, nil
	case "no":
		return RolePlain, nil
	}
	return 0, fmt.Errorf("-init %q: want auto, yes or no", mode)
}

// Prepare does what role r asks of the agent before it serves (SetupGuest,
// the child subreaper), and returns what it could not set up but can serve
// without. An error means the agent cannot run as r.
func Prepare(r Role) (warnings []string, err error) {
	if r == RoleInit || r == RoleInitChild {
		warnings = SetupGuest()
	}
	if r != RoleInit {
		// Not PID 1: without this, orphans of the containers would go to
		// the guest's init (or the host's), which does not reap them.
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return warnings, fmt.Errorf("become child subreaper: %w", err)
		}
	}
	return warnings, nil
}

// SetupGuest does an init's mounts. Each is done only where missing, so that
// it is right in a VM whether the agent is its init (nothing mounted yet) or
// the workload of libkrun's init (everything but /tmp mounted, / rshared),
// under the libkrun test double (the same as libkrun's init) and on a host
// in a private mount namespace. It returns what it could not do; none of it
// is fatal to serving the API.
func SetupGuest() (warnings []string) {
	warn := func(format string, a ...any) {
		w := fmt.Sprintf(format, a...)
		log.Printf("init: %s", w)
		warnings = append(warnings, w)
	}
	// Nothing mounted from here on may propagate out (to the host, under the
	// test double); rslave, not rprivate, so that what the host mounts under
	// the shared guest root later (a joining container's rootfs, as virtio-fs
	// shows it in a VM) still reaches us. On a mount with no master (a VM's
	// root) rslave is the same as rprivate.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		warn("make / rslave: %v", err)
	}
	mount := func(src, target, fstype string, flags uintptr, data string) {
		if err := os.MkdirAll(target, 0o755); err != nil {
			warn("mkdir %s: %v", target, err)
			return
		}
		if err := unix.Mount(src, target, fstype, flags, data); err != nil && !errors.Is(err, unix.EBUSY) {
			warn("mount %s on %s: %v", fstype, target, err)
		}
	}
	const common = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	// /proc must belong to our PID namespace: the agent reads /proc/<pid>.
	if self, err := os.Readlink("/proc/self"); err != nil || self != strconv.Itoa(os.Getpid()) {
		mount("proc", "/proc", "proc", common, "")
	}
	if !isFS("/sys", unix.SYSFS_MAGIC) {
		mount("sysfs", "/sys", "sysfs", common, "")
	}
	if st, err := os.Stat("/dev/null"); err != nil || st.Mode()&os.ModeCharDevice == 0 {
		mount("devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755")
	}
	if !isFS("/sys/fs/cgroup", unix.CGROUP2_SUPER_MAGIC) {
		mount("cgroup2", "/sys/fs/cgroup", "cgroup2", common, "")
	}
	// /tmp: a tmpfs (libkrun's init makes none) on a fresh guest root: where
	// it is missing, or empty and not a mount point. What is there already
	// is not hidden.
	switch empty, _ := isEmptyDir("/tmp"); {
	case isFS("/tmp", unix.TMPFS_MAGIC):
	case empty && !isMountPoint("/tmp"):
		mount("tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777")
	default:
		if _, err := os.Stat("/tmp"); errors.Is(err, os.ErrNotExist) {
			mount("tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777")
		} else {
			warn("/tmp is not a tmpfs and not an empty directory: left as it is")
		}
	}
	return warnings
}

func isFS(path string, magic int64) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && int64(st.Type) == magic
}

func isMountPoint(path string) bool {
	var a, b unix.Stat_t
	if unix.Stat(path, &a) != nil || unix.Stat(path+"/..", &b) != nil {
		return false
	}
	return a.Dev != b.Dev || a.Ino == b.Ino
}

func isEmptyDir(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	return len(names) == 0 && err != nil, nil
}
