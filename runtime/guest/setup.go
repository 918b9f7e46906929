package guest

import (
	"errors"
	"fmt"
	"log"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// SetupGuest does an init's mounts. Each is done only where missing, so that
// it is right in a VM (nothing mounted yet), under the libkrun test double
// (/proc already mounted for the agent's PID namespace) and on a host in a
// private mount namespace. It returns what it could not do; none of it is
// fatal to serving the API.
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
	// /tmp: a tmpfs only on a fresh guest root (empty, not a mount point).
	if empty, _ := isEmptyDir("/tmp"); empty && !isMountPoint("/tmp") {
		mount("tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777")
	} else if _, err := os.Stat("/tmp"); errors.Is(err, os.ErrNotExist) {
		mount("tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777")
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
