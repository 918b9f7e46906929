package jail

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// setupContainer runs in the container's new mount namespace: it makes the
// mount tree private, mounts the spec's mounts under the rootfs, creates
// device nodes, pivots into the rootfs and applies the spec's masked and
// read-only paths, sysctls and hostname.
func setupContainer(cfg *Config) error {
	spec := cfg.Spec
	if spec == nil {
		return errors.New("no spec")
	}
	if !cfg.NewNS[string(specs.MountNamespace)] {
		return errors.New("the container has no mount namespace of its own")
	}
	// As runc: the whole tree gets the rootfs propagation (rprivate by
	// default), then the mount holding the rootfs is made private, so that
	// the rootfs bind mount is not shared (pivot_root refuses a shared new
	// root or parent: EINVAL) and does not propagate anywhere; the
	// propagation asked for is applied to the new "/" after pivot_root.
	prop := uintptr(unix.MS_REC | unix.MS_PRIVATE)
	var rootProp uintptr
	if spec.Linux != nil && spec.Linux.RootfsPropagation != "" {
		p, ok := propagationFlags[spec.Linux.RootfsPropagation]
		if !ok {
			return fmt.Errorf("unknown rootfsPropagation %q", spec.Linux.RootfsPropagation)
		}
		prop, rootProp = p, p
	}
	if err := unix.Mount("", "/", "", prop, ""); err != nil {
		return fmt.Errorf("set / propagation: %w", err)
	}
	rootfs := cfg.Rootfs
	if err := parentMountPrivate(rootfs); err != nil {
		return err
	}
	if err := unix.Mount(rootfs, rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind mount rootfs %s: %w", rootfs, err)
	}
	// Opened after the bind mount, so that lookups start from it.
	root, err := openRoot(rootfs)
	if err != nil {
		return err
	}
	defer root.Close()
	unix.Umask(0)
	devTmpfs := false
	for _, m := range spec.Mounts {
		if err := mountOne(root, m); err != nil {
			return err
		}
		if filepath.Clean(m.Destination) == "/dev" && m.Type == "tmpfs" {
			devTmpfs = true
		}
	}
	if devTmpfs {
		if err := defaultDevices(root); err != nil {
			return err
		}
	}
	if spec.Linux != nil {
		for _, d := range spec.Linux.Devices {
			// As runc: /dev/ptmx is the devpts instance's (the link
			// defaultDevices makes), whatever the spec lists; a
			// privileged container's host devices list it.
			if filepath.Clean(d.Path) == "/dev/ptmx" {
				continue
			}
			if err := makeDevice(root, d); err != nil {
				return err
			}
		}
	}
	unix.Umask(0o022)
	if err := pivotRoot(rootfs); err != nil {
		return err
	}
	if rootProp != 0 {
		if err := unix.Mount("", "/", "", rootProp, ""); err != nil {
			return fmt.Errorf("set the root's propagation to %s: %w", spec.Linux.RootfsPropagation, err)
		}
	}
	if spec.Linux != nil {
		// Sysctls first, as runc does: /proc/sys is among the read-only
		// paths CRI gives.
		for k, v := range spec.Linux.Sysctl {
			p := "/proc/sys/" + strings.ReplaceAll(k, ".", "/")
			if err := os.WriteFile(p, []byte(v), 0); err != nil {
				return fmt.Errorf("sysctl %s=%s: %w", k, v, err)
			}
		}
		for _, p := range spec.Linux.MaskedPaths {
			if err := maskPath(p); err != nil {
				return err
			}
		}
		for _, p := range spec.Linux.ReadonlyPaths {
			if err := readonlyPath(p); err != nil {
				return err
			}
		}
	}
	if cfg.NewNS[string(specs.UTSNamespace)] {
		if spec.Hostname != "" {
			if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
				return fmt.Errorf("sethostname: %w", err)
			}
		}
		if spec.Domainname != "" {
			if err := unix.Setdomainname([]byte(spec.Domainname)); err != nil {
				return fmt.Errorf("setdomainname: %w", err)
			}
		}
	}
	if spec.Root != nil && spec.Root.Readonly {
		if err := remountReadonly("/"); err != nil {
			return fmt.Errorf("read-only root: %w", err)
		}
	}
	return nil
}

// parentMountPrivate makes the mount that holds dir (dir's own, when it is a
// mount point) private, not recursively.
func parentMountPrivate(dir string) error {
	mp, err := mountPointOf(dir)
	if err != nil {
		return err
	}
	if err := unix.Mount("", mp, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make the mount %s holding the rootfs private: %w", mp, err)
	}
	return nil
}

// mountPointOf is the mount point of the mount holding path (absolute, with
// no symlink: the agent's own rootfs path): the longest mount point of
// /proc/self/mountinfo that is path or one of its parents.
func mountPointOf(path string) (string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	path = filepath.Clean(path)
	best := ""
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountinfo(f[4])
		if (mp == "/" || path == mp || strings.HasPrefix(path, mp+"/")) && len(mp) > len(best) {
			best = mp
		}
	}
	if best == "" {
		return "", fmt.Errorf("no mount holds %s", path)
	}
	return best, nil
}

// unescapeMountinfo undoes the octal escapes of mountinfo's paths.
func unescapeMountinfo(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

func pivotRoot(rootfs string) error {
	oldroot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(oldroot)
	newroot, err := unix.Open(rootfs, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(newroot)
	if err := unix.Fchdir(newroot); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root %s: %w", rootfs, err)
	}
	if err := unix.Fchdir(oldroot); err != nil {
		return err
	}
	// The old root (now stacked under "/") goes, without touching the agent's
	// mounts: slave first so that the unmount does not propagate.
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("old root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	return unix.Chdir("/")
}

func maskPath(p string) error {
	st, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("masked path %s: %w", p, err)
	}
	if st.IsDir() {
		err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY, "")
	} else {
		err = unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
	}
	if err != nil {
		return fmt.Errorf("mask %s: %w", p, err)
	}
	return nil
}

func readonlyPath(p string) error {
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("read-only path %s: %w", p, err)
	}
	return remountReadonly(p)
}

// remountReadonly makes a bind mount read-only, keeping its other flags.
func remountReadonly(p string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return err
	}
	keep := uintptr(st.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME | unix.MS_NODIRATIME)
	if err := unix.Mount("", p, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|keep, ""); err != nil {
		return fmt.Errorf("remount %s read-only: %w", p, err)
	}
	return nil
}
