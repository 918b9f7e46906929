package jail

import (
	"errors"
	"fmt"
	"os"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

type device struct {
	name         string
	major, minor uint32
}

var defaultDeviceList = []device{
	{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
}

// defaultDevices fills a fresh /dev tmpfs the way runc does.
func defaultDevices(root *os.File) error {
	for _, d := range defaultDeviceList {
		mode := os.FileMode(0o666)
		if err := makeDevice(root, specs.LinuxDevice{Path: "/dev/" + d.name, Type: "c", Major: int64(d.major), Minor: int64(d.minor), FileMode: &mode}); err != nil {
			return err
		}
	}
	links := [][2]string{
		{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
		{"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"},
	}
	dev, err := dirInRoot(root, "/dev")
	if err != nil {
		return err
	}
	defer dev.Close()
	for _, l := range links {
		if err := unix.Symlinkat(l[0], int(dev.Fd()), l[1]); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("symlink /dev/%s: %w", l[1], err)
		}
	}
	return nil
}

// makeDevice makes the device node d inside root, in place of whatever is
// there.
func makeDevice(root *os.File, d specs.LinuxDevice) error {
	var typ uint32
	switch d.Type {
	case "c", "u":
		typ = unix.S_IFCHR
	case "b":
		typ = unix.S_IFBLK
	case "p":
		typ = unix.S_IFIFO
	default:
		return fmt.Errorf("device %s: unknown type %q", d.Path, d.Type)
	}
	perm := uint32(0o666)
	if d.FileMode != nil {
		perm = uint32(d.FileMode.Perm())
	}
	dir, name, err := parentInRoot(root, d.Path)
	if err != nil {
		return fmt.Errorf("device %s: %w", d.Path, err)
	}
	defer dir.Close()
	dfd := int(dir.Fd())
	if err := unix.Unlinkat(dfd, name, 0); errors.Is(err, unix.EISDIR) {
		_ = unix.Unlinkat(dfd, name, unix.AT_REMOVEDIR)
	}
	dev := unix.Mkdev(uint32(d.Major), uint32(d.Minor))
	if err := unix.Mknodat(dfd, name, typ|perm, int(dev)); err != nil {
		return fmt.Errorf("mknod %s: %w", d.Path, err)
	}
	// From here on, the node by handle: the name could be swapped.
	fd, err := unix.Openat(dfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("device %s: %w", d.Path, err)
	}
	node := os.NewFile(uintptr(fd), d.Path)
	defer node.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("device %s: %w", d.Path, err)
	}
	if st.Mode&unix.S_IFMT != typ || (typ != unix.S_IFIFO && st.Rdev != dev) {
		return fmt.Errorf("device %s: the node made is not the one asked for (mode %#o, device %d:%d)", d.Path, st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	if err := unix.Chmod(fdPath(node), perm); err != nil {
		return fmt.Errorf("chmod device %s: %w", d.Path, err)
	}
	uid, gid := 0, 0
	if d.UID != nil {
		uid = int(*d.UID)
	}
	if d.GID != nil {
		gid = int(*d.GID)
	}
	if err := unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH); err != nil {
		return fmt.Errorf("chown device %s: %w", d.Path, err)
	}
	return nil
}
