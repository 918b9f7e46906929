package ctrd

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
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
