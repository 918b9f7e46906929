// Package share puts host filesystems into a running sandbox's guest root,
// which the VM sees over virtio-fs: a container's root filesystem and the
// host files and directories its spec bind-mounts (under CRI: hosts,
// resolv.conf, hostname, /dev/shm, volumes).
//
// Every mount is made detached in the shim — open_tree(2) of the host path,
// or, for a container's root filesystem, containerd's mounts made at the
// container's bundle rootfs directory (as containerd's runc shim does),
// cloned and unmounted there at once — and attached inside the VMM's own
// mount namespace (its jail, see cmd/boxlite-vmm), on a target opened
// beneath the guest root with openat2(2) without following any link. The
// guest writes that tree: a symbolic link it plants can redirect nothing,
// and since the mounts live only in the jail's namespace, none of them is
// ever seen, copied or pinned by the host's mount namespace.
//
// It must not leave a mount in the host's mount namespace, nor resolve a
// path under the guest root the ordinary way. It knows nothing of
// containers or specs: package sandbox decides what to share where.
package share

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/core/mount"
	"golang.org/x/sys/unix"
)

// Namespace is the mount namespace of a sandbox's VMM, where its guest root
// is mounted at a fixed path.
type Namespace struct {
	ns   *os.File // /proc/<pid>/ns/mnt
	proc *os.File // the shim's own /proc, to name mounts by file descriptor
	root string   // the guest root's path inside the namespace
}

// Open opens the mount namespace of process pid, whose guest root is at
// guestRoot (an absolute path inside that namespace, e.g. "/root").
func Open(pid int, guestRoot string) (*Namespace, error) {
	if !filepath.IsAbs(guestRoot) || filepath.Clean(guestRoot) != guestRoot {
		return nil, fmt.Errorf("share: guest root %q is not a clean absolute path", guestRoot)
	}
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/mnt", pid))
	if err != nil {
		return nil, fmt.Errorf("share: the VMM's mount namespace: %w", err)
	}
	proc, err := os.OpenFile("/proc", unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("share: %w", err)
	}
	return &Namespace{ns: ns, proc: proc, root: guestRoot}, nil
}

// Close releases the namespace (the mounts in it stay for as long as the
// namespace lives: until the VMM and its children are gone).
func (n *Namespace) Close() error {
	return errors.Join(n.ns.Close(), n.proc.Close())
}

// BindOptions say how a host path is bind-mounted into the guest root.
type BindOptions struct {
	// Recursive brings the source's submounts along (OCI "rbind"); without
	// it only the source's own mount is shared ("bind").
	Recursive bool
	// ReadOnly makes the top mount read-only (OCI "ro"), RecursiveReadOnly
	// every mount of the tree ("rro").
	ReadOnly          bool
	RecursiveReadOnly bool
}

// Bind shares the host path source at rel, a path relative to the guest
// root: rel's missing parent directories are made (0755), and rel itself is
// made as a new directory or an empty file, as source is. The mount is
// nosuid and nodev on the host side, whatever the options.
func (n *Namespace) Bind(source, rel string, o BindOptions) error {
	st, err := os.Stat(source)
	if err != nil {
		return fmt.Errorf("share: bind source: %w", err)
	}
	flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC)
	if o.Recursive {
		flags |= unix.AT_RECURSIVE
	}
	tree, err := unix.OpenTree(unix.AT_FDCWD, source, flags)
	if err != nil {
		return fmt.Errorf("share: cloning the mount of %s: %w", source, err)
	}
	defer unix.Close(tree)
	if err := restrict(tree, o.ReadOnly, o.RecursiveReadOnly); err != nil {
		return fmt.Errorf("share: %s: %w", source, err)
	}
	return n.attach(tree, rel, st.IsDir())
}

// Rootfs mounts containerd's mounts of a container's root filesystem at
// staging (the container's bundle rootfs directory, an empty directory of
// the host that the guest cannot reach), clones the mounted tree detached,
// unmounts staging at once, and attaches the clone at rel (a new directory).
func (n *Namespace) Rootfs(mounts []mount.Mount, staging, rel string) error {
	if len(mounts) == 0 {
		return errors.New("share: no rootfs mounts given")
	}
	if err := os.MkdirAll(staging, 0o711); err != nil {
		return fmt.Errorf("share: rootfs staging directory: %w", err)
	}
	if err := mount.All(mounts, staging); err != nil {
		_ = mount.UnmountRecursive(staging, unix.MNT_DETACH)
		return fmt.Errorf("share: mounting the rootfs at %s: %w", staging, err)
	}
	tree, err := unix.OpenTree(unix.AT_FDCWD, staging, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if uerr := mount.UnmountRecursive(staging, unix.MNT_DETACH); uerr != nil && err == nil {
		if tree >= 0 {
			unix.Close(tree)
		}
		return fmt.Errorf("share: unmounting the rootfs staging mount %s: %w", staging, uerr)
	}
	if err != nil {
		return fmt.Errorf("share: cloning the rootfs mounted at %s: %w", staging, err)
	}
	defer unix.Close(tree)
	if err := restrict(tree, false, false); err != nil {
		return fmt.Errorf("share: rootfs: %w", err)
	}
	return n.attach(tree, rel, true)
}

// Remove unmounts everything mounted at rel or below it, then removes rel
// and what is under it. A rel that does not exist is no error.
func (n *Namespace) Remove(rel string) error {
	parts, err := split(rel)
	if err != nil {
		return err
	}
	return n.inRoot(func(root int) error {
		for tries := 0; ; tries++ {
			below, err := n.mountsBelow(filepath.Join(n.root, rel))
			if err != nil {
				return err
			}
			if len(below) == 0 {
				break
			}
			if tries > 64 {
				return fmt.Errorf("share: %s: still mounted at %v after %d rounds of unmounting", rel, below, tries)
			}
			// Deepest first; each is opened beneath the guest root without
			// following links, and unmounted by file descriptor: the mount
			// is the one opened, wherever the guest may have moved things.
			for i := len(below) - 1; i >= 0; i-- {
				sub, _ := filepath.Rel(n.root, below[i])
				fd, err := openBeneath(root, strings.Split(sub, "/"))
				if errors.Is(err, unix.ENOENT) {
					continue
				}
				if err != nil {
					return fmt.Errorf("share: %s: %w", sub, notDir(sub, err))
				}
				top, err := isMountRoot(fd)
				if err == nil && top {
					err = n.umountFD(fd)
				}
				unix.Close(fd)
				if err != nil {
					return fmt.Errorf("share: unmounting %s: %w", sub, err)
				}
			}
		}
		r, err := os.OpenRoot(n.root)
		if err != nil {
			return fmt.Errorf("share: %w", err)
		}
		defer r.Close()
		if err := r.RemoveAll(filepath.Join(parts...)); err != nil {
			return fmt.Errorf("share: removing %s: %w", rel, err)
		}
		return nil
	})
}

// mountsBelow lists the mount points of the calling thread's namespace at
// or under dir, in mount order (read through the shim's /proc: the
// namespace's own root has none).
func (n *Namespace) mountsBelow(dir string) ([]string, error) {
	fd, err := unix.Openat(int(n.proc.Fd()), "thread-self/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("share: reading the VMM namespace's mounts: %w", err)
	}
	f := os.NewFile(uintptr(fd), "mountinfo")
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("share: reading the VMM namespace's mounts: %w", err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out, nil
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space...).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// umountFD unmounts (detaches) the mount fd names, through the shim's own
// /proc: the namespace's root has no /proc, and anything there would be the
// VMM's to plant.
func (n *Namespace) umountFD(fd int) error {
	if err := unix.Fchdir(int(n.proc.Fd())); err != nil {
		return err
	}
	return unix.Unmount(fmt.Sprintf("self/fd/%d", fd), unix.MNT_DETACH)
}

// restrict sets nosuid and nodev on every mount of the detached tree, and
// read-only on its top mount (readOnly) or on all of them (recursive).
func restrict(tree int, readOnly, recursiveReadOnly bool) error {
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	if recursiveReadOnly {
		attr.Attr_set |= unix.MOUNT_ATTR_RDONLY
	}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
		return fmt.Errorf("setting nosuid,nodev: %w", err)
	}
	if readOnly && !recursiveReadOnly {
		if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
			return fmt.Errorf("making the mount read-only: %w", err)
		}
	}
	return nil
}

// attach moves the detached tree onto rel (made as a directory, or an
// empty file) inside the namespace.
func (n *Namespace) attach(tree int, rel string, dir bool) error {
	parts, err := split(rel)
	if err != nil {
		return err
	}
	return n.inRoot(func(root int) error {
		parent, err := mkdirBeneath(root, parts[:len(parts)-1])
		if err != nil {
			return fmt.Errorf("share: %s: %w", rel, err)
		}
		defer unix.Close(parent)
		target, err := makeTarget(parent, parts[len(parts)-1], dir)
		if err != nil {
			return fmt.Errorf("share: %s: %w", rel, err)
		}
		defer unix.Close(target)
		if err := unix.MoveMount(tree, "", target, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
			return fmt.Errorf("share: attaching the mount at %s: %w", rel, err)
		}
		return nil
	})
}

// do runs f on an OS thread of its own that has entered the namespace. The
// thread is never given back to the Go scheduler (it has left the shim's
// mount namespace): it ends with the goroutine. f must make only plain
// system calls on it (nothing that hands work to other threads).
func (n *Namespace) do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Its own root, working directory and umask first: setns into a
		// mount namespace refuses a thread that shares them.
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("share: unshare CLONE_FS: %w", err)
			return
		}
		if err := unix.Setns(int(n.ns.Fd()), unix.CLONE_NEWNS); err != nil {
			errc <- fmt.Errorf("share: entering the VMM's mount namespace: %w", err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// inRoot runs f in the namespace (see do) with the guest root opened.
func (n *Namespace) inRoot(f func(root int) error) error {
	return n.do(func() error {
		root, err := n.openRoot()
		if err != nil {
			return err
		}
		defer unix.Close(root)
		return f(root)
	})
}

// resolveFlags follow no link of any kind and never leave the directory
// resolution starts from.
const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// openRoot opens the guest root inside the namespace (a mount point the
// guest cannot replace; no link is followed on the way).
func (n *Namespace) openRoot() (int, error) {
	fd, err := unix.Openat2(unix.AT_FDCWD, n.root, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return -1, fmt.Errorf("share: opening the guest root %s in the VMM's namespace: %w", n.root, err)
	}
	return fd, nil
}

// openBeneath opens the path parts beneath dir (O_PATH), following no link.
func openBeneath(dir int, parts []string) (int, error) {
	return unix.Openat2(dir, filepath.Join(parts...), &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: resolveFlags,
	})
}

// mkdirBeneath opens the directory parts beneath dir, making each missing
// component (0755), one at a time and without following links: a component
// that is not a directory (a link the guest planted) is an error.
func mkdirBeneath(dir int, parts []string) (int, error) {
	fd, err := unix.Dup(dir)
	if err != nil {
		return -1, err
	}
	for i, p := range parts {
		if err := unix.Mkdirat(fd, p, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			unix.Close(fd)
			return -1, fmt.Errorf("making %s: %w", filepath.Join(parts[:i+1]...), err)
		}
		next, err := unix.Openat2(fd, p, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
			Resolve: resolveFlags,
		})
		unix.Close(fd)
		if err != nil {
			return -1, notDir(filepath.Join(parts[:i+1]...), err)
		}
		fd = next
	}
	return fd, nil
}

// makeTarget makes name in dir, a new directory or a new empty file, and
// opens it (O_PATH) without following a link.
func makeTarget(dir int, name string, isDir bool) (int, error) {
	if isDir {
		if err := unix.Mkdirat(dir, name, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, fmt.Errorf("making %s: %w", name, err)
		}
		fd, err := unix.Openat2(dir, name, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
			Resolve: resolveFlags,
		})
		if err != nil {
			return -1, notDir(name, err)
		}
		return fd, nil
	}
	fd, err := unix.Openat2(dir, name, &unix.OpenHow{
		Flags:   unix.O_CREAT | unix.O_EXCL | unix.O_WRONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Mode:    0o644,
		Resolve: resolveFlags,
	})
	if err != nil {
		return -1, fmt.Errorf("making the file %s: %w", name, err)
	}
	return fd, nil
}

func notDir(path string, err error) error {
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.EXDEV) {
		return fmt.Errorf("%s is not a directory the shim made (a link or file put there from the guest?): refusing to follow it: %w", path, err)
	}
	return fmt.Errorf("opening %s: %w", path, err)
}

// isMountRoot reports whether fd names the root of a mount (something is
// mounted where it was opened).
func isMountRoot(fd int) (bool, error) {
	var st unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &st); err != nil {
		return false, err
	}
	if st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 {
		return st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
	}
	return false, errors.New("the kernel does not report mount roots (statx STATX_ATTR_MOUNT_ROOT, Linux 5.8)")
}

// split checks that rel is a clean relative path inside the guest root and
// returns its components.
func split(rel string) ([]string, error) {
	if rel == "" || filepath.IsAbs(rel) || filepath.Clean(rel) != rel || rel == "." ||
		rel == ".." || strings.HasPrefix(rel, "../") {
		return nil, fmt.Errorf("share: %q is not a clean path relative to the guest root", rel)
	}
	return strings.Split(rel, "/"), nil
}
