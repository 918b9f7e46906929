package jail

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestMakeDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mknod")
	}
	root, outside := testRoot(t)
	rootfs := root.Name()
	if err := os.WriteFile(filepath.Join(rootfs, "etc", "old"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	mode := func(m os.FileMode) *os.FileMode { return &m }
	id := func(v uint32) *uint32 { return &v }
	for _, tc := range []struct {
		d        specs.LinuxDevice
		at       string
		typ      uint32
		perm     uint32
		uid, gid uint32
		fails    bool
	}{
		{d: specs.LinuxDevice{Path: "/dev/null", Type: "c", Major: 1, Minor: 3}, at: "/dev/null", typ: unix.S_IFCHR, perm: 0o666},
		{d: specs.LinuxDevice{Path: "/abs/zero", Type: "c", Major: 1, Minor: 5, FileMode: mode(0o620), UID: id(1), GID: id(2)},
			at: "/etc/zero", typ: unix.S_IFCHR, perm: 0o620, uid: 1, gid: 2},
		{d: specs.LinuxDevice{Path: "/out/loop0", Type: "b", Major: 7, Minor: 0, FileMode: mode(0o600)}, at: "/outside/loop0", typ: unix.S_IFBLK, perm: 0o600},
		{d: specs.LinuxDevice{Path: "/up/dev/tty", Type: "u", Major: 5, Minor: 0}, at: "/dev/tty", typ: unix.S_IFCHR, perm: 0o666},
		{d: specs.LinuxDevice{Path: "/dangling", Type: "p"}, at: "/nowhere/deeper", typ: unix.S_IFIFO, perm: 0o666},
		{d: specs.LinuxDevice{Path: "/etc/old", Type: "c", Major: 1, Minor: 7}, at: "/etc/old", typ: unix.S_IFCHR, perm: 0o666},
		{d: specs.LinuxDevice{Path: "/etc/sub", Type: "c", Major: 1, Minor: 8}, at: "/etc/sub", typ: unix.S_IFCHR, perm: 0o666},
		{d: specs.LinuxDevice{Path: "/dev/what", Type: "x"}, fails: true},
		{d: specs.LinuxDevice{Path: "/loop", Type: "c", Major: 1, Minor: 3}, fails: true},
		{d: specs.LinuxDevice{Path: "/", Type: "c", Major: 1, Minor: 3}, fails: true},
	} {
		err := makeDevice(root, tc.d)
		if tc.fails {
			if err == nil {
				t.Errorf("makeDevice(%+v): no error", tc.d)
			}
			continue
		}
		if err != nil {
			t.Errorf("makeDevice(%s): %v", tc.d.Path, err)
			continue
		}
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(rootfs, tc.at), &st); err != nil {
			t.Errorf("makeDevice(%s): %v", tc.d.Path, err)
			continue
		}
		if st.Mode&unix.S_IFMT != tc.typ || st.Mode&0o7777 != tc.perm || st.Uid != tc.uid || st.Gid != tc.gid {
			t.Errorf("makeDevice(%s): at %s mode %#o owner %d:%d; want %#o owner %d:%d", tc.d.Path, tc.at, st.Mode, st.Uid, st.Gid, tc.typ|tc.perm, tc.uid, tc.gid)
		}
		if tc.typ != unix.S_IFIFO && (unix.Major(st.Rdev) != uint32(tc.d.Major) || unix.Minor(st.Rdev) != uint32(tc.d.Minor)) {
			t.Errorf("makeDevice(%s): device %d:%d; want %d:%d", tc.d.Path, unix.Major(st.Rdev), unix.Minor(st.Rdev), tc.d.Major, tc.d.Minor)
		}
	}
	assertEmptyDir(t, outside)
}

func TestDefaultDevices(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mknod")
	}
	root, _ := testRoot(t)
	dev := filepath.Join(root.Name(), "dev")
	if err := os.Mkdir(dev, 0o755); err != nil {
		t.Fatal(err)
	}
	// A second time finds everything there: no error.
	for i := 0; i < 2; i++ {
		if err := defaultDevices(root); err != nil {
			t.Fatalf("defaultDevices (%d): %v", i+1, err)
		}
	}
	for _, d := range defaultDeviceList {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dev, d.name), &st); err != nil {
			t.Errorf("/dev/%s: %v", d.name, err)
			continue
		}
		if st.Mode != unix.S_IFCHR|0o666 || unix.Major(st.Rdev) != d.major || unix.Minor(st.Rdev) != d.minor {
			t.Errorf("/dev/%s: mode %#o, device %d:%d; want a 0666 character device %d:%d", d.name, st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev), d.major, d.minor)
		}
	}
	for name, target := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
		"stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx",
	} {
		if got, err := os.Readlink(filepath.Join(dev, name)); err != nil || got != target {
			t.Errorf("/dev/%s -> %q, %v; want -> %q", name, got, err, target)
		}
	}
}

func TestDefaultDevicesThroughALink(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mknod")
	}
	root, outside := testRoot(t)
	// The image's /dev is a link out of the root: what goes there lands in
	// the root's /outside.
	if err := os.Symlink("../outside", filepath.Join(root.Name(), "dev")); err != nil {
		t.Fatal(err)
	}
	if err := defaultDevices(root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(root.Name(), "outside", "null")); err != nil {
		t.Errorf("/dev/null in the root: %v", err)
	}
	if target, err := os.Readlink(filepath.Join(root.Name(), "outside", "ptmx")); err != nil || target != "pts/ptmx" {
		t.Errorf("/dev/ptmx in the root: -> %q, %v", target, err)
	}
	assertEmptyDir(t, outside)
}
