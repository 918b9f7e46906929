package ctrd

import (
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
