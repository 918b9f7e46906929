package jail

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

var propagationFlags = map[string]uintptr{
	"private": unix.MS_PRIVATE, "rprivate": unix.MS_REC | unix.MS_PRIVATE,
	"shared": unix.MS_SHARED, "rshared": unix.MS_REC | unix.MS_SHARED,
	"slave": unix.MS_SLAVE, "rslave": unix.MS_REC | unix.MS_SLAVE,
	"unbindable": unix.MS_UNBINDABLE, "runbindable": unix.MS_REC | unix.MS_UNBINDABLE,
}

var mountFlags = map[string]struct {
	clear bool
	flag  uintptr
}{
	"ro": {false, unix.MS_RDONLY}, "rw": {true, unix.MS_RDONLY},
	"nosuid": {false, unix.MS_NOSUID}, "suid": {true, unix.MS_NOSUID},
	"nodev": {false, unix.MS_NODEV}, "dev": {true, unix.MS_NODEV},
	"noexec": {false, unix.MS_NOEXEC}, "exec": {true, unix.MS_NOEXEC},
	"sync": {false, unix.MS_SYNCHRONOUS}, "async": {true, unix.MS_SYNCHRONOUS},
	"dirsync": {false, unix.MS_DIRSYNC}, "remount": {false, unix.MS_REMOUNT},
	"mand": {false, unix.MS_MANDLOCK}, "nomand": {true, unix.MS_MANDLOCK},
	"noatime": {false, unix.MS_NOATIME}, "atime": {true, unix.MS_NOATIME},
	"nodiratime": {false, unix.MS_NODIRATIME}, "diratime": {true, unix.MS_NODIRATIME},
	"relatime": {false, unix.MS_RELATIME}, "norelatime": {true, unix.MS_RELATIME},
	"strictatime": {false, unix.MS_STRICTATIME}, "nostrictatime": {true, unix.MS_STRICTATIME},
	"bind": {false, unix.MS_BIND}, "rbind": {false, unix.MS_BIND | unix.MS_REC},
}

// recursiveAttrs are the OCI options that set or clear a mount attribute
// on a mount and every mount below it (mount_setattr with AT_RECURSIVE), as
// runc gives them.
var recursiveAttrs = map[string]struct{ set, clr uint64 }{
	"rro": {unix.MOUNT_ATTR_RDONLY, 0}, "rrw": {0, unix.MOUNT_ATTR_RDONLY},
	"rnosuid": {unix.MOUNT_ATTR_NOSUID, 0}, "rsuid": {0, unix.MOUNT_ATTR_NOSUID},
	"rnodev": {unix.MOUNT_ATTR_NODEV, 0}, "rdev": {0, unix.MOUNT_ATTR_NODEV},
	"rnoexec": {unix.MOUNT_ATTR_NOEXEC, 0}, "rexec": {0, unix.MOUNT_ATTR_NOEXEC},
	"rnodiratime": {unix.MOUNT_ATTR_NODIRATIME, 0}, "rdiratime": {0, unix.MOUNT_ATTR_NODIRATIME},
	"rrelatime": {unix.MOUNT_ATTR_RELATIME, unix.MOUNT_ATTR__ATIME}, "rnorelatime": {0, unix.MOUNT_ATTR__ATIME},
	"rnoatime": {unix.MOUNT_ATTR_NOATIME, unix.MOUNT_ATTR__ATIME}, "ratime": {0, unix.MOUNT_ATTR__ATIME},
	"rstrictatime": {unix.MOUNT_ATTR_STRICTATIME, unix.MOUNT_ATTR__ATIME}, "rnostrictatime": {0, unix.MOUNT_ATTR__ATIME},
	"rnosymfollow": {unix.MOUNT_ATTR_NOSYMFOLLOW, 0}, "rsymfollow": {0, unix.MOUNT_ATTR_NOSYMFOLLOW},
}

// recursiveAttr folds the recursive options of options into the
// attributes to set and to clear (later options win).
func recursiveAttr(options []string) (attr unix.MountAttr, any bool) {
	for _, o := range options {
		r, ok := recursiveAttrs[o]
		if !ok {
			continue
		}
		any = true
		attr.Attr_set = attr.Attr_set&^r.clr | r.set
		attr.Attr_clr = attr.Attr_clr&^r.set | r.clr
	}
	return attr, any
}

// MountOptions are the OCI mount options the guest understands (the shim
// advertises them in its features).
func MountOptions() []string {
	var o []string
	for k := range mountFlags {
		o = append(o, k)
	}
	for k := range propagationFlags {
		o = append(o, k)
	}
	for k := range recursiveAttrs {
		o = append(o, k)
	}
	o = append(o, ignoredOptions...)
	sort.Strings(o)
	return o
}

// ignoredOptions are OCI options with nothing to do in the guest.
var ignoredOptions = []string{"tmpcopyup", "idmap", "ridmap", "x-mount.mkdir"}

// parseMountOptions splits OCI mount options into flags, propagation flags
// and the filesystem's data string; the recursive attribute options
// (recursiveAttrs) are left to recursiveAttr.
func parseMountOptions(options []string) (flags uintptr, prop []uintptr, data string) {
	var d []string
	for _, o := range options {
		if f, ok := mountFlags[o]; ok {
			if f.clear {
				flags &^= f.flag
			} else {
				flags |= f.flag
			}
			continue
		}
		if p, ok := propagationFlags[o]; ok {
			prop = append(prop, p)
			continue
		}
		if _, ok := recursiveAttrs[o]; ok || slices.Contains(ignoredOptions, o) {
			continue
		}
		d = append(d, o)
	}
	return flags, prop, strings.Join(d, ",")
}

// mountOne mounts m onto its destination inside root.
func mountOne(root *os.File, m specs.Mount) error {
	if !filepath.IsAbs(m.Destination) {
		return fmt.Errorf("mount destination %q is not absolute", m.Destination)
	}
	flags, prop, data := parseMountOptions(m.Options)
	typ := m.Type
	bind := typ == "bind" || flags&unix.MS_BIND != 0
	var target *os.File
	if bind {
		st, err := os.Stat(m.Source)
		if err != nil {
			return fmt.Errorf("bind mount source: %w", err)
		}
		if st.IsDir() {
			target, err = dirInRoot(root, m.Destination)
		} else {
			target, err = fileInRoot(root, m.Destination)
		}
		if err != nil {
			return fmt.Errorf("mount target: %w", err)
		}
		defer target.Close()
		if err := unix.Mount(m.Source, fdPath(target), "", unix.MS_BIND|(flags&unix.MS_REC), ""); err != nil {
			return fmt.Errorf("bind mount %s on %s: %w", m.Source, m.Destination, err)
		}
	} else {
		if typ == "cgroup" {
			typ, data = "cgroup2", "" // the guest's cgroups are v2 only
		}
		if typ == "" {
			return fmt.Errorf("mount %s: no type", m.Destination)
		}
		var err error
		if target, err = dirInRoot(root, m.Destination); err != nil {
			return fmt.Errorf("mount target: %w", err)
		}
		defer target.Close()
		src := m.Source
		if src == "" {
			src = typ
		}
		if err := unix.Mount(src, fdPath(target), typ, flags, data); err != nil {
			return fmt.Errorf("mount %s (%s) on %s: %w", src, typ, m.Destination, err)
		}
	}
	rest := flags &^ (unix.MS_BIND | unix.MS_REC | unix.MS_REMOUNT)
	rattr, recursive := recursiveAttr(m.Options)
	if (!bind || rest == 0) && len(prop) == 0 && !recursive {
		return nil
	}
	// What follows is about the new mount, not the directory under it.
	top, err := reopenInRoot(root, target)
	if err != nil {
		return err
	}
	defer top.Close()
	if bind && rest != 0 {
		if err := unix.Mount("", fdPath(top), "", rest|unix.MS_BIND|unix.MS_REMOUNT, ""); err != nil {
			return fmt.Errorf("remount %s: %w", m.Destination, err)
		}
	}
	if recursive {
		if err := unix.MountSetattr(int(top.Fd()), "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &rattr); err != nil {
			return fmt.Errorf("set the recursive attributes of %s (%v): %w", m.Destination, m.Options, err)
		}
	}
	for _, p := range prop {
		if err := unix.Mount("", fdPath(top), "", p, ""); err != nil {
			return fmt.Errorf("set propagation of %s: %w", m.Destination, err)
		}
	}
	return nil
}
