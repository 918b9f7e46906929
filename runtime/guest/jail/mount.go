package jail

import (
	"fmt"
	"os"
	"path/filepath"
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

// parseMountOptions splits OCI mount options into flags, propagation flags
// and the filesystem's data string.
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
		switch o {
		case "tmpcopyup", "idmap", "ridmap", "x-mount.mkdir":
			continue // not applicable here
		}
		d = append(d, o)
	}
	return flags, prop, strings.Join(d, ",")
}

func mountOne(rootfs string, m specs.Mount) error {
	if !filepath.IsAbs(m.Destination) {
		return fmt.Errorf("mount destination %q is not absolute", m.Destination)
	}
	dest, err := securePath(rootfs, m.Destination)
	if err != nil {
		return err
	}
	flags, prop, data := parseMountOptions(m.Options)
	typ := m.Type
	if typ == "bind" || flags&unix.MS_BIND != 0 {
		st, err := os.Stat(m.Source)
		if err != nil {
			return fmt.Errorf("bind mount source: %w", err)
		}
		if err := makeTarget(dest, st.IsDir()); err != nil {
			return err
		}
		if err := unix.Mount(m.Source, dest, "", unix.MS_BIND|(flags&unix.MS_REC), ""); err != nil {
			return fmt.Errorf("bind mount %s on %s: %w", m.Source, m.Destination, err)
		}
		if rest := flags &^ (unix.MS_BIND | unix.MS_REC | unix.MS_REMOUNT); rest != 0 {
			if err := unix.Mount("", dest, "", rest|unix.MS_BIND|unix.MS_REMOUNT, ""); err != nil {
				return fmt.Errorf("remount %s: %w", m.Destination, err)
			}
		}
	} else {
		if typ == "cgroup" {
			typ, data = "cgroup2", "" // the guest's cgroups are v2 only
		}
		if typ == "" {
			return fmt.Errorf("mount %s: no type", m.Destination)
		}
		if err := makeTarget(dest, true); err != nil {
			return err
		}
		src := m.Source
		if src == "" {
			src = typ
		}
		if err := unix.Mount(src, dest, typ, flags, data); err != nil {
			return fmt.Errorf("mount %s (%s) on %s: %w", src, typ, m.Destination, err)
		}
	}
	for _, p := range prop {
		if err := unix.Mount("", dest, "", p, ""); err != nil {
			return fmt.Errorf("set propagation of %s: %w", m.Destination, err)
		}
	}
	return nil
}

func makeTarget(path string, dir bool) error {
	if dir {
		if err := os.MkdirAll(path, 0o755); err != nil {
			return fmt.Errorf("mount target: %w", err)
		}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("mount target: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("mount target: %w", err)
	}
	return f.Close()
}

// securePath resolves path inside root as if root were "/": symlinks are
// followed but never lead out of root.
func securePath(root, path string) (string, error) {
	resolved := "/"
	remaining := filepath.Clean("/" + path)
	links := 0
	for remaining != "" {
		remaining = strings.TrimLeft(remaining, "/")
		if remaining == "" {
			break
		}
		comp := remaining
		if i := strings.IndexByte(remaining, '/'); i >= 0 {
			comp, remaining = remaining[:i], remaining[i:]
		} else {
			remaining = ""
		}
		switch comp {
		case ".":
			continue
		case "..":
			resolved = filepath.Dir(resolved)
			continue
		}
		next := filepath.Join(resolved, comp)
		st, err := os.Lstat(filepath.Join(root, next))
		if err != nil || st.Mode()&os.ModeSymlink == 0 {
			resolved = next
			continue
		}
		if links++; links > 255 {
			return "", fmt.Errorf("%s: too many symlinks", path)
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) {
			resolved = "/"
		}
		remaining = target + "/" + remaining
	}
	return filepath.Join(root, resolved), nil
}
