package jail

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// Paths of the spec (mount destinations, device nodes) are resolved inside
// the container's root filesystem as if it were "/": symlinks are followed
// but never lead out of it, ".." stops at it. The root filesystem is the
// image's, so its symlinks are not to be trusted; nothing is done by a path
// that could be swapped between a check and its use. The root is a handle
// (openRoot), every lookup starts from it (pathrs-lite: openat2 with
// RESOLVE_IN_ROOT where the kernel has it), directories are made along the
// way by handle (MkdirAllHandle), and a mount goes onto the target's handle
// through /proc/self/fd, as runc does.

// openRoot opens the root filesystem for lookups inside it.
func openRoot(rootfs string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Clean(rootfs), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open root filesystem: %w", err)
	}
	return f, nil
}

// inRoot names path inside root, as a clean absolute path with no symlink in
// it: what path is from inside the container. A component that does not exist
// is taken as it is, and so is the rest of a dangling symlink's target (it is
// where the container would create it). The name is only a plan: the handle
// functions below walk it again from root, by handle, so that a symlink put
// in meanwhile still cannot lead out.
func inRoot(root *os.File, path string) (string, error) {
	full, err := securejoin.SecureJoin(root.Name(), path)
	if err != nil {
		return "", fmt.Errorf("resolve %s in the root filesystem: %w", path, err)
	}
	rel, err := filepath.Rel(root.Name(), full)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("resolve %s in the root filesystem: %s is outside it", path, full)
	}
	return filepath.Join("/", rel), nil
}

// dirInRoot returns a handle (O_PATH) on the directory path inside root,
// making it and its parents where missing.
func dirInRoot(root *os.File, path string) (*os.File, error) {
	name, err := inRoot(root, path)
	if err != nil {
		return nil, err
	}
	f, err := pathrs.MkdirAllHandle(root, name, 0o755)
	if err != nil {
		return nil, fmt.Errorf("make directory %s in the root filesystem: %w", name, err)
	}
	return f, nil
}

// parentInRoot returns a handle on the directory that holds path inside
// root (made where missing) and the name path has in it.
func parentInRoot(root *os.File, path string) (*os.File, string, error) {
	name, err := inRoot(root, path)
	if err != nil {
		return nil, "", err
	}
	if name == "/" {
		return nil, "", fmt.Errorf("%s is the root filesystem itself", path)
	}
	dir, err := pathrs.MkdirAllHandle(root, filepath.Dir(name), 0o755)
	if err != nil {
		return nil, "", fmt.Errorf("make directory %s in the root filesystem: %w", filepath.Dir(name), err)
	}
	return dir, filepath.Base(name), nil
}

// fileInRoot returns a handle on path inside root, an empty file made there
// (and its parent directories) where it is missing: a bind mount's target
// when its source is not a directory. What exists is not opened for reading
// (it could be a FIFO or a device): the handle is O_PATH.
func fileInRoot(root *os.File, path string) (*os.File, error) {
	name, err := inRoot(root, path)
	if err != nil {
		return nil, err
	}
	f, err := pathrs.OpenatInRoot(root, name)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		if err != nil {
			err = fmt.Errorf("open %s in the root filesystem: %w", name, err)
		}
		return f, err
	}
	dir, base, err := parentInRoot(root, name)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	// base has no "/" and dir is inside root: with O_NOFOLLOW nothing here
	// can lead out.
	fd, err := unix.Openat(int(dir.Fd()), base, unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create %s in the root filesystem: %w", name, err)
	}
	return os.NewFile(uintptr(fd), filepath.Join(root.Name(), name)), nil
}

// reopenInRoot returns a new handle on the path f has inside root. After a
// mount onto f, f is still the directory under the mount; the new handle is
// the mount's root, which a remount or a propagation change needs.
func reopenInRoot(root, f *os.File) (*os.File, error) {
	rootPath, err := os.Readlink(fdPath(root))
	if err != nil {
		return nil, fmt.Errorf("root filesystem: %w", err)
	}
	full, err := os.Readlink(fdPath(f))
	if err != nil {
		return nil, fmt.Errorf("mount target: %w", err)
	}
	rel, err := filepath.Rel(rootPath, full)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return nil, fmt.Errorf("mount target %s is outside the root filesystem %s", full, rootPath)
	}
	top, err := pathrs.OpenatInRoot(root, rel)
	if err != nil {
		return nil, fmt.Errorf("reopen mount target %s: %w", full, err)
	}
	// Something may have been swapped in between: make sure it is the same
	// place.
	if again, err := os.Readlink(fdPath(top)); err != nil || again != full {
		top.Close()
		return nil, fmt.Errorf("mount target %s moved while it was reopened (now %q)", full, again)
	}
	return top, nil
}

// fdPath names f through /proc/self/fd, for the calls (mount, chmod) that
// take a path and not a file descriptor. /proc is the agent's own here.
func fdPath(f *os.File) string {
	return "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
}
