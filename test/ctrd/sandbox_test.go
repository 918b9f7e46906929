package ctrd

import (
	"testing"
)

func TestShimConfig(t *testing.T) {
	want := "libkrun_path = \"/l/libkrun.so.1\"\nstate_dir = \"/s\"\ncache_dir = \"/c\"\n"
	if got := ShimConfig("/l/libkrun.so.1", "/s", "/c"); got != want {
		t.Errorf("ShimConfig = %q, want %q", got, want)
	}
}
