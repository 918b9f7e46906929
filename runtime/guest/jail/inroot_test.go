package jail

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// testRoot makes a root filesystem whose symlinks try to lead out, beside a
// directory "outside" that must stay untouched, and returns the root's handle
// and the outside directory.
//
//	root/etc/hosts     a file
//	root/etc/sub/      a directory
//	root/abs        -> /etc           (absolute: the root's /etc)
//	root/up         -> ../../..       (relative, climbing out)
//	root/out        -> ../outside     (the sibling of the root)
//	root/hostetc    -> /etc/hosts/../../../../etc
//	root/dangling   -> /nowhere/deeper
//	root/rel        -> etc/hosts
//	root/loop       -> loop
//	root/fifo          a FIFO
func testRoot(t *testing.T) (*os.File, string) {
	t.Helper()
	base := t.TempDir()
	rootfs, outside := filepath.Join(base, "root"), filepath.Join(base, "outside")
	for _, d := range []string{filepath.Join(rootfs, "etc", "sub"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc", "hosts"), []byte("127.0.0.1 localhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{
		"abs": "/etc", "up": "../../..", "out": "../outside", "hostetc": "/etc/hosts/../../../../etc",
		"dangling": "/nowhere/deeper", "rel": "etc/hosts", "loop": "loop",
	} {
		if err := os.Symlink(target, filepath.Join(rootfs, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mkfifo(filepath.Join(rootfs, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := openRoot(rootfs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return root, outside
}

// where says where a handle is, relative to root ("/" for root itself).
func where(t *testing.T, root, f *os.File) string {
	t.Helper()
	rootPath, err := os.Readlink(fdPath(root))
	if err != nil {
		t.Fatal(err)
	}
	p, err := os.Readlink(fdPath(f))
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(rootPath, p)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join("/", rel)
}

func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Errorf("%s: %d entries made outside the root filesystem", dir, len(ents))
	}
}

func TestInRoot(t *testing.T) {
	root, outside := testRoot(t)
	for _, tc := range []struct {
		path, want string
		loop       bool
	}{
		{path: "/etc/hosts", want: "/etc/hosts"},
		{path: "etc/hosts", want: "/etc/hosts"},
		{path: "/", want: "/"},
		{path: "/a/b/c", want: "/a/b/c"},               // missing components stay as they are
		{path: "/etc/./sub//x/", want: "/etc/sub/x"},   // cleaned
		{path: "/../../etc", want: "/etc"},             // ".." stops at the root
		{path: "/etc/sub/../../../..", want: "/"},      // ...from below too
		{path: "/abs/passwd", want: "/etc/passwd"},     // absolute links are the root's
		{path: "/up", want: "/"},                       // relative links climbing out stop at the root
		{path: "/up/etc/hosts", want: "/etc/hosts"},    // ...and go on from there
		{path: "/out/x", want: "/outside/x"},           // a link to the sibling is a name in the root
		{path: "/hostetc/shadow", want: "/etc/shadow"}, // ".." through a link stops at the root too
		{path: "/dangling", want: "/nowhere/deeper"},   // a dangling link is where it points
		{path: "/dangling/x/../y", want: "/nowhere/deeper/y"},
		{path: "/rel", want: "/etc/hosts"},            // a link to a file, resolved
		{path: "/missing/../rel", want: "/etc/hosts"}, // ".." of a missing component
		{path: "/loop", loop: true},
		{path: "/loop/x", loop: true},
	} {
		got, err := inRoot(root, tc.path)
		switch {
		case tc.loop:
			if !errors.Is(err, unix.ELOOP) {
				t.Errorf("inRoot(%q) = %q, %v; want ELOOP", tc.path, got, err)
			}
		case err != nil:
			t.Errorf("inRoot(%q): %v", tc.path, err)
		case got != tc.want:
			t.Errorf("inRoot(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
	assertEmptyDir(t, outside)
}

func TestDirInRoot(t *testing.T) {
	root, outside := testRoot(t)
	for _, tc := range []struct {
		path, want string
		err        error
	}{
		{path: "/etc/sub", want: "/etc/sub"},
		{path: "/new/a/b", want: "/new/a/b"},
		{path: "/up/made/by/up", want: "/made/by/up"},
		{path: "/out/x", want: "/outside/x"},
		{path: "/abs/made", want: "/etc/made"},
		{path: "/dangling/x", want: "/nowhere/deeper/x"},
		{path: "/../../../escape", want: "/escape"},
		{path: "/etc/hosts", err: unix.ENOTDIR},
		{path: "/rel/x", err: unix.ENOTDIR},
		{path: "/loop", err: unix.ELOOP},
	} {
		f, err := dirInRoot(root, tc.path)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("dirInRoot(%q): %v; want %v", tc.path, err, tc.err)
			}
			if f != nil {
				f.Close()
			}
			continue
		}
		if err != nil {
			t.Errorf("dirInRoot(%q): %v", tc.path, err)
			continue
		}
		if got := where(t, root, f); got != tc.want {
			t.Errorf("dirInRoot(%q) is at %q, want %q", tc.path, got, tc.want)
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			t.Errorf("dirInRoot(%q): not a directory (%v)", tc.path, err)
		}
		f.Close()
	}
	assertEmptyDir(t, outside)
}

func TestFileInRoot(t *testing.T) {
	root, outside := testRoot(t)
	rootfs := root.Name()
	for _, tc := range []struct {
		path, want string
		made       bool // an empty file was made
		err        error
	}{
		{path: "/etc/hosts", want: "/etc/hosts"},
		{path: "/rel", want: "/etc/hosts"},
		{path: "/etc/resolv.conf", want: "/etc/resolv.conf", made: true},
		{path: "/abs/hostname", want: "/etc/hostname", made: true},
		{path: "/run/secrets/token", want: "/run/secrets/token", made: true},
		{path: "/out/file", want: "/outside/file", made: true},
		{path: "/up/up/file", want: "/file", made: true},
		{path: "/dangling", want: "/nowhere/deeper", made: true},
		{path: "/fifo", want: "/fifo"}, // not opened for reading: this would block
		{path: "/etc/sub", want: "/etc/sub"},
		{path: "/etc/hosts/x", err: unix.ENOTDIR},
		{path: "/loop", err: unix.ELOOP},
		{path: "/", want: "/"},
	} {
		f, err := fileInRoot(root, tc.path)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("fileInRoot(%q): %v; want %v", tc.path, err, tc.err)
			}
			if f != nil {
				f.Close()
			}
			continue
		}
		if err != nil {
			t.Errorf("fileInRoot(%q): %v", tc.path, err)
			continue
		}
		if got := where(t, root, f); got != tc.want {
			t.Errorf("fileInRoot(%q) is at %q, want %q", tc.path, got, tc.want)
		}
		f.Close()
		st, err := os.Lstat(filepath.Join(rootfs, tc.want))
		if err != nil {
			t.Errorf("fileInRoot(%q): %v", tc.path, err)
			continue
		}
		if tc.made && (!st.Mode().IsRegular() || st.Size() != 0 || st.Mode().Perm() != 0o644&^umask()) {
			t.Errorf("fileInRoot(%q) made %v, size %d; want an empty file, mode %v", tc.path, st.Mode(), st.Size(), os.FileMode(0o644&^umask()))
		}
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "etc", "hosts")); err != nil || string(b) != "127.0.0.1 localhost\n" {
		t.Errorf("etc/hosts after fileInRoot: %q, %v; want it untouched", b, err)
	}
	assertEmptyDir(t, outside)
}

func TestParentInRoot(t *testing.T) {
	root, outside := testRoot(t)
	for _, tc := range []struct {
		path, dir, name string
		fails           bool
	}{
		{path: "/dev/null", dir: "/dev", name: "null"},
		{path: "/abs/null", dir: "/etc", name: "null"},
		{path: "/out/null", dir: "/outside", name: "null"},
		{path: "/rel", dir: "/etc", name: "hosts"},
		{path: "/", fails: true},
		{path: "/up", fails: true},
	} {
		dir, name, err := parentInRoot(root, tc.path)
		if tc.fails {
			if err == nil {
				dir.Close()
				t.Errorf("parentInRoot(%q) = %q: no error; want one (the root has no parent here)", tc.path, name)
			}
			continue
		}
		if err != nil {
			t.Errorf("parentInRoot(%q): %v", tc.path, err)
			continue
		}
		if got := where(t, root, dir); got != tc.dir || name != tc.name {
			t.Errorf("parentInRoot(%q) = %q in %q, want %q in %q", tc.path, name, got, tc.name, tc.dir)
		}
		dir.Close()
	}
	assertEmptyDir(t, outside)
}

func umask() os.FileMode {
	m := unix.Umask(0)
	unix.Umask(m)
	return os.FileMode(m)
}
