package jail

import (
	"os"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestRootfsPropagation sets a container up (pivot_root included) in a
// mount namespace of its own whose tree is shared, as the guest's is, for
// each rootfsPropagation: the new root must end with the propagation asked
// for. rshared used to be applied before pivot_root, which then failed with
// EINVAL (a shared new root).
func TestRootfsPropagation(t *testing.T) {
	for _, tc := range []struct {
		prop   string
		shared bool // the new root is in a peer group
	}{
		{prop: ""},
		{prop: "rprivate"},
		{prop: "rshared", shared: true},
		{prop: "shared", shared: true},
	} {
		t.Run("propagation "+tc.prop, func(t *testing.T) {
			rootfs := t.TempDir()
			for _, d := range []string{"etc", "proc"} {
				if err := os.MkdirAll(rootfs+"/"+d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			inMountNamespace(t, func() {
				// The guest's tree is shared: make this namespace's so.
				if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SHARED, ""); err != nil {
					t.Errorf("make / shared: %v", err)
					return
				}
				cfg := &Config{Rootfs: rootfs, NewNS: map[string]bool{string(specs.MountNamespace): true},
					Spec: &specs.Spec{Linux: &specs.Linux{RootfsPropagation: tc.prop}}}
				if err := setupContainer(cfg); err != nil {
					t.Errorf("setupContainer with rootfsPropagation %q: %v", tc.prop, err)
					return
				}
				// The mounts as the container sees them: a /proc of its own.
				if err := unix.Mount("proc", "/proc", "proc", 0, ""); err != nil {
					t.Errorf("mount proc in the new root: %v", err)
					return
				}
				b, err := os.ReadFile("/proc/thread-self/mountinfo")
				if err != nil {
					t.Errorf("read mountinfo: %v", err)
					return
				}
				var root string
				for _, l := range strings.Split(string(b), "\n") {
					if f := strings.Fields(l); len(f) > 6 && f[4] == "/" {
						root = l
					}
				}
				if root == "" {
					t.Errorf("no mount at / after pivot_root:\n%s", b)
					return
				}
				if got := strings.Contains(root, " shared:"); got != tc.shared {
					t.Errorf("root after pivot_root: %q; want shared=%v", root, tc.shared)
				}
				if _, err := os.Stat("/etc"); err != nil {
					t.Errorf("the new root is not the rootfs: %v", err)
				}
			})
		})
	}
}
