package preflight

import (
	"strings"
	"testing"

	"github.com/boxlite/boxlite-shim/config"
)

// The libkrun line of `check` says libkrun's version and how it was told,
// and fails a libkrun too old for the staged kernels, as every VMM start
// refuses it. Before, a libkrun 1.18.0 with krun_add_net_tap passed ("ok
// libkrun 1.18.0 loaded from ..."; the line was made inside Libkrun, so
// this test did not build against it).
func TestLibkrunResult(t *testing.T) {
	cfg := config.Default()
	ok := LibkrunInfo{Requested: "libkrun.so.1", Loaded: "/usr/lib64/libkrun.so.1", File: "/usr/lib64/libkrun.so.1.19.0",
		Version: "1.19.0", VersionExact: true, VersionFrom: "file name libkrun.so.1.19.0; its symbols agree: >= 1.19.0", Supported: true, NetTap: true}
	old := ok
	old.File, old.Version, old.VersionFrom, old.Supported = "/usr/lib64/libkrun.so.1.18.0", "1.18.0", "file name libkrun.so.1.18.0; its symbols agree: 1.18.x", false
	old.Unsupported = "libkrun 1.18.0 (file name libkrun.so.1.18.0; its symbols agree: 1.18.x) is too old: needs >= 1.18.1 for the staged kernel (...); install libkrun 1.18.1 or newer"
	noTap := ok
	noTap.NetTap = false
	double := ok
	double.TestDouble = true
	stale := ok
	stale.Supported = false
	for _, tc := range []struct {
		name   string
		info   LibkrunInfo
		status Status
		want   []string
	}{
		{"supported", ok, Pass, []string{"libkrun 1.19.0 (file name libkrun.so.1.19.0; its symbols agree: >= 1.19.0) loaded from /usr/lib64/libkrun.so.1.19.0"}},
		{"too old", old, Fail, []string{"/usr/lib64/libkrun.so.1.18.0: libkrun 1.18.0 (file name libkrun.so.1.18.0; its symbols agree: 1.18.x) is too old: needs >= 1.18.1 for the staged kernel",
			"install libkrun 1.18.1 or newer (boxlite supports libkrun 1.18.1 and newer)"}},
		{"no net tap", noTap, Warn, []string{"libkrun 1.19.0 (file name", "has no krun_add_net_tap"}},
		{"test double", double, Warn, []string{"test double", "it stands for libkrun 1.19.0"}},
		{"probe of an older boxlite-vmm", stale, Fail, []string{"did not tell libkrun's version"}},
		{"not loadable", LibkrunInfo{Requested: "libkrun.so.1", Error: "libkrun.so.1: cannot open shared object file"}, Fail, []string{"libkrun.so.1 cannot be loaded"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := libkrunResult(cfg, tc.info)
			text := r.Detail + " -> " + r.Fix
			if r.Status != tc.status {
				t.Errorf("status %v, want %v: %s", r.Status, tc.status, text)
			}
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("%q lacks %q", text, w)
				}
			}
			if usable := tc.info.Usable(); usable != (tc.status != Fail) {
				t.Errorf("Usable() = %v for a %v line", usable, tc.status)
			}
		})
	}
}
