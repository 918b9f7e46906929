package jail

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestParseMountOptions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		options []string
		flags   uintptr
		prop    []uintptr
		data    string
	}{
		{name: "none"},
		{
			name:    "the usual hardening",
			options: []string{"ro", "nosuid", "nodev", "noexec"},
			flags:   unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC,
		},
		{
			name:    "CRI's /dev tmpfs",
			options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"},
			flags:   unix.MS_NOSUID | unix.MS_STRICTATIME,
			data:    "mode=755,size=65536k",
		},
		{
			name:    "CRI's devpts",
			options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"},
			flags:   unix.MS_NOSUID | unix.MS_NOEXEC,
			data:    "newinstance,ptmxmode=0666,mode=0620,gid=5",
		},
		{
			name:    "rbind with rprivate",
			options: []string{"rbind", "rprivate"},
			flags:   unix.MS_BIND | unix.MS_REC,
			prop:    []uintptr{unix.MS_REC | unix.MS_PRIVATE},
		},
		{
			name:    "read-only bind, shared",
			options: []string{"bind", "ro", "rshared"},
			flags:   unix.MS_BIND | unix.MS_RDONLY,
			prop:    []uintptr{unix.MS_REC | unix.MS_SHARED},
		},
		{
			name:    "every propagation, in order",
			options: []string{"rslave", "slave", "private", "shared", "unbindable", "runbindable"},
			prop: []uintptr{
				unix.MS_REC | unix.MS_SLAVE, unix.MS_SLAVE, unix.MS_PRIVATE, unix.MS_SHARED,
				unix.MS_UNBINDABLE, unix.MS_REC | unix.MS_UNBINDABLE,
			},
		},
		{
			name:    "remount read-only",
			options: []string{"remount", "ro"},
			flags:   unix.MS_REMOUNT | unix.MS_RDONLY,
		},
		{
			name:    "a later option clears an earlier one",
			options: []string{"ro", "noexec", "nosuid", "rw", "exec"},
			flags:   unix.MS_NOSUID,
		},
		{
			name:    "clearing what was never set",
			options: []string{"rw", "suid", "dev", "exec", "async", "atime", "diratime", "norelatime", "nostrictatime", "nomand"},
		},
		{
			name:    "atime and sync flags",
			options: []string{"noatime", "nodiratime", "relatime", "sync", "dirsync", "mand"},
			flags:   unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME | unix.MS_SYNCHRONOUS | unix.MS_DIRSYNC | unix.MS_MANDLOCK,
		},
		{
			name:    "options that do not apply here are dropped",
			options: []string{"tmpcopyup", "idmap", "ridmap", "x-mount.mkdir", "size=1m"},
			data:    "size=1m",
		},
		{
			name:    "what is not a flag goes to the filesystem, in order",
			options: []string{"uid=1000", "nodev", "gid=1000", "mode=1777"},
			flags:   unix.MS_NODEV,
			data:    "uid=1000,gid=1000,mode=1777",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			flags, prop, data := parseMountOptions(tc.options)
			if flags != tc.flags {
				t.Errorf("flags = %#x, want %#x", flags, tc.flags)
			}
			if !slices.Equal(prop, tc.prop) {
				t.Errorf("propagation = %#x, want %#x", prop, tc.prop)
			}
			if data != tc.data {
				t.Errorf("data = %q, want %q", data, tc.data)
			}
		})
	}
}

// inMountNamespace runs f on a thread of its own, in a new mount namespace
// whose mounts propagate nowhere. The thread ends with f, and the namespace
// (with every mount f made) with it. f reports with t.Errorf, not t.Fatal.
func inMountNamespace(t *testing.T, f func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: a mount namespace")
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread goes with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			errc <- fmt.Errorf("unshare mount namespace: %w", err)
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			errc <- fmt.Errorf("make / private: %w", err)
			return
		}
		f()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Skipf("no mount namespace here: %v", err)
	}
}

// mountInfo is the line of this thread's mountinfo for the mount at path.
func mountInfo(path string) string {
	b, _ := os.ReadFile("/proc/thread-self/mountinfo")
	line := ""
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == path {
			line = l // the last one: the top of the stack
		}
	}
	return line
}

func TestMountOne(t *testing.T) {
	hostRoot, outside := testRoot(t)
	rootfs, err := os.Readlink(fdPath(hostRoot))
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srcFile := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(srcFile, []byte("10.0.0.1 pod\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	statfs := func(p string) (unix.Statfs_t, error) {
		var st unix.Statfs_t
		return st, unix.Statfs(p, &st)
	}
	inMountNamespace(t, func() {
		// The root as the child has it: opened in its mount namespace (a
		// handle from before would be on the mounts of another).
		root, err := openRoot(rootfs)
		if err != nil {
			t.Errorf("%v", err)
			return
		}
		defer root.Close()
		for _, tc := range []struct {
			name  string
			m     specs.Mount
			at    string // where it must land, in the root
			check func(at string) error
		}{
			{
				name: "tmpfs through an absolute link, with flags and data",
				m:    specs.Mount{Destination: "/abs/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "noexec", "mode=700", "size=1m"}},
				at:   "/etc/tmp",
				check: func(at string) error {
					st, err := statfs(at)
					if err != nil {
						return err
					}
					const want = unix.ST_NOSUID | unix.ST_NODEV | unix.ST_NOEXEC
					if st.Type != unix.TMPFS_MAGIC || st.Flags&want != want {
						return fmt.Errorf("filesystem %#x, flags %#x; want tmpfs with nosuid,nodev,noexec", st.Type, st.Flags)
					}
					if fi, err := os.Stat(at); err != nil || fi.Mode().Perm() != 0o700 {
						return fmt.Errorf("mode %v, %v; want 0700", fi.Mode(), err)
					}
					return nil
				},
			},
			{
				name: "read-only rbind through a link to the sibling",
				m:    specs.Mount{Destination: "/out/data", Type: "bind", Source: src, Options: []string{"rbind", "ro"}},
				at:   "/outside/data",
				check: func(at string) error {
					if b, err := os.ReadFile(filepath.Join(at, "f")); err != nil || string(b) != "from the host\n" {
						return fmt.Errorf("f: %q, %v; want the source's", b, err)
					}
					if st, err := statfs(at); err != nil || st.Flags&unix.ST_RDONLY == 0 {
						return fmt.Errorf("flags %#x, %v; want read-only", st.Flags, err)
					}
					if err := os.WriteFile(filepath.Join(at, "g"), nil, 0o644); !errors.Is(err, unix.EROFS) {
						return fmt.Errorf("write: %v; want EROFS", err)
					}
					return nil
				},
			},
			{
				name: "a file onto a link to a file",
				m:    specs.Mount{Destination: "/rel", Type: "bind", Source: srcFile, Options: []string{"bind", "nosuid"}},
				at:   "/etc/hosts",
				check: func(at string) error {
					if b, err := os.ReadFile(at); err != nil || string(b) != "10.0.0.1 pod\n" {
						return fmt.Errorf("%q, %v; want the source's", b, err)
					}
					if st, err := statfs(at); err != nil || st.Flags&unix.ST_NOSUID == 0 {
						return fmt.Errorf("flags %#x, %v; want nosuid (the remount)", st.Flags, err)
					}
					return nil
				},
			},
			{
				name: "a file made where there was none",
				m:    specs.Mount{Destination: "/run/secrets/token", Type: "bind", Source: srcFile, Options: []string{"rbind", "ro"}},
				at:   "/run/secrets/token",
				check: func(at string) error {
					if b, err := os.ReadFile(at); err != nil || string(b) != "10.0.0.1 pod\n" {
						return fmt.Errorf("%q, %v; want the source's", b, err)
					}
					return nil
				},
			},
			{
				name: "rshared on the new mount",
				m:    specs.Mount{Destination: "/up/shared", Type: "tmpfs", Source: "tmpfs", Options: []string{"rshared"}},
				at:   "/shared",
				check: func(at string) error {
					if l := mountInfo(at); !strings.Contains(l, " shared:") {
						return fmt.Errorf("mountinfo %q; want it shared", l)
					}
					return nil
				},
			},
			{
				name: "private by default",
				m:    specs.Mount{Destination: "/dangling", Type: "tmpfs", Source: "tmpfs"},
				at:   "/nowhere/deeper",
				check: func(at string) error {
					if l := mountInfo(at); l == "" || strings.Contains(l, " shared:") {
						return fmt.Errorf("mountinfo %q; want a private mount", l)
					}
					return nil
				},
			},
		} {
			if err := mountOne(root, tc.m); err != nil {
				t.Errorf("%s: mountOne: %v", tc.name, err)
				continue
			}
			if err := tc.check(filepath.Join(rootfs, tc.at)); err != nil {
				t.Errorf("%s: at %s: %v", tc.name, tc.at, err)
			}
		}
		for _, m := range []specs.Mount{
			{Destination: "relative", Type: "tmpfs"},
			{Destination: "/notype"},
			{Destination: "/nosource", Type: "bind", Source: filepath.Join(src, "missing")},
			{Destination: "/loop", Type: "tmpfs"},
			{Destination: "/etc/hosts/x", Type: "tmpfs"},
		} {
			if err := mountOne(root, m); err == nil {
				t.Errorf("mountOne(%+v): no error", m)
			}
		}
		assertEmptyDir(t, outside)
	})
	// The namespace is gone, and its mounts with it.
	if b, err := os.ReadFile(filepath.Join(rootfs, "etc", "hosts")); err != nil || string(b) != "127.0.0.1 localhost\n" {
		t.Errorf("etc/hosts once the namespace is gone: %q, %v; want the root's own", b, err)
	}
}

// TestMountRecursiveAttributes binds a source holding a submount: rro makes
// both read-only (mount_setattr, AT_RECURSIVE), ro the top mount only.
func TestMountRecursiveAttributes(t *testing.T) {
	hostRoot, _ := testRoot(t)
	rootfs, err := os.Readlink(fdPath(hostRoot))
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	if err := os.Mkdir(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	readOnly := func(p string) (bool, error) {
		var st unix.Statfs_t
		err := unix.Statfs(p, &st)
		return st.Flags&unix.ST_RDONLY != 0, err
	}
	inMountNamespace(t, func() {
		if err := unix.Mount("tmpfs", filepath.Join(src, "sub"), "tmpfs", 0, "size=1m"); err != nil {
			t.Errorf("submount: %v", err)
			return
		}
		root, err := openRoot(rootfs)
		if err != nil {
			t.Errorf("%v", err)
			return
		}
		defer root.Close()
		for _, tc := range []struct {
			options          []string
			topRO, submoutRO bool
		}{
			{options: []string{"rbind", "rro"}, topRO: true, submoutRO: true},
			{options: []string{"rbind", "ro"}, topRO: true},
			{options: []string{"rbind", "rro", "rrw"}},
			{options: []string{"rbind", "rnosuid", "rnoexec", "rnoatime"}},
		} {
			dest := "/vol-" + strings.Join(tc.options, "-")
			if err := mountOne(root, specs.Mount{Destination: dest, Type: "bind", Source: src, Options: tc.options}); err != nil {
				t.Errorf("%v: %v", tc.options, err)
				continue
			}
			top, err1 := readOnly(filepath.Join(rootfs, dest))
			sub, err2 := readOnly(filepath.Join(rootfs, dest, "sub"))
			if err := errors.Join(err1, err2); err != nil {
				t.Errorf("%v: %v", tc.options, err)
				continue
			}
			if top != tc.topRO || sub != tc.submoutRO {
				t.Errorf("%v: top read-only %v, submount read-only %v; want %v, %v", tc.options, top, sub, tc.topRO, tc.submoutRO)
			}
			if slices.Contains(tc.options, "rnoexec") {
				var st unix.Statfs_t
				if err := unix.Statfs(filepath.Join(rootfs, dest, "sub"), &st); err != nil || st.Flags&(unix.ST_NOSUID|unix.ST_NOEXEC|unix.ST_NOATIME) != unix.ST_NOSUID|unix.ST_NOEXEC|unix.ST_NOATIME {
					t.Errorf("%v: submount flags %#x (%v); want nosuid,noexec,noatime", tc.options, st.Flags, err)
				}
			}
		}
	})
}

func TestMountOptionsAdvertised(t *testing.T) {
	opts := MountOptions()
	for _, want := range []string{"rro", "rbind", "ro", "rshared", "rnosuid", "nodev"} {
		if !slices.Contains(opts, want) {
			t.Errorf("MountOptions() = %v; want %s in it", opts, want)
		}
	}
	for _, o := range opts {
		if _, _, data := parseMountOptions([]string{o}); data != "" {
			t.Errorf("advertised option %q is passed on as filesystem data, not understood", o)
		}
	}
}
