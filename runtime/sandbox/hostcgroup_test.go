package sandbox

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestHostCgroupDirs(t *testing.T) {
	dirs, err := hostCgroupDirs("/pods/p1")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if !strings.HasSuffix(d, "/pods/p1") || !filepath.IsAbs(d) {
			t.Errorf("cgroup directory %s", d)
		}
	}
	for _, bad := range []string{"kubepods.slice:cri-containerd:p1", "relative/p1", ""} {
		if _, err := hostCgroupDirs(bad); err == nil {
			t.Errorf("cgroupsPath %q accepted", bad)
		}
	}
}
