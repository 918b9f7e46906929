package ctrd

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func TestNewSince(t *testing.T) {
	cases := []struct {
		name          string
		before, after []string
		want          []string
	}{
		{"nothing before", nil, []string{"directory: /tmp/bxc1"}, []string{"directory: /tmp/bxc1"}},
		{"stale only", []string{"directory: /tmp/bxc1"}, []string{"directory: /tmp/bxc1"}, nil},
		{"stale and new", []string{"directory: /tmp/bxc1"}, []string{"directory: /tmp/bxc1", "mount: /x/.boxlite/containers/a/rootfs"}, []string{"mount: /x/.boxlite/containers/a/rootfs"}},
		{"stale gone", []string{"directory: /tmp/bxc1"}, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := NewSince(tc.before, tc.after); !slices.Equal(got, tc.want) {
				t.Errorf("NewSince(%q, %q) = %q, want %q", tc.before, tc.after, got, tc.want)
			}
		})
	}
}

// PodDirs names test/crid's directories under $TMPDIR and the suite's own
// globs.
func TestPodDirs(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	for _, d := range []string{"bxp1", "bxq2"} {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		globs []string
		want  []string
	}{
		{nil, []string{"directories: [" + filepath.Join(tmp, "bxp1") + "]"}},
		{[]string{filepath.Join(tmp, "bxq*")}, []string{"directories: [" + filepath.Join(tmp, "bxp1") + "]", "directories: [" + filepath.Join(tmp, "bxq2") + "]"}},
	} {
		got := PodDirs(tc.globs...)
		for _, w := range tc.want {
			if !slices.Contains(got, w) {
				t.Errorf("PodDirs(%q) = %q: lacks %q", tc.globs, got, w)
			}
		}
	}
}

// MountsUnder lists a mount below dir, "/" included; PodMounts one whose
// path has the suite's mark, and not without it.
func TestMountsUnderAndPodMounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	tmp := t.TempDir()
	mnt := filepath.Join(tmp, "bxunit-mark")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) })
	for _, dir := range []string{"/", tmp, tmp + "/", mnt} {
		if got := MountsUnder(dir); !slices.Contains(got, mnt) {
			t.Errorf("MountsUnder(%s) = %q: lacks %s", dir, got, mnt)
		}
	}
	if got := MountsUnder(mnt + "-not"); slices.Contains(got, mnt) {
		t.Errorf("MountsUnder(%s-not) lists %s", mnt, mnt)
	}
	if got := PodMounts("/bxunit-mark"); !slices.Contains(got, "mount: "+mnt) {
		t.Errorf("PodMounts(/bxunit-mark) = %q: lacks %s", got, mnt)
	}
	if got := PodMounts(); slices.Contains(got, "mount: "+mnt) {
		t.Errorf("PodMounts() = %q: lists %s, which has no /bxp", got, mnt)
	}
}
