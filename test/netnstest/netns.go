// Package netnstest makes throwaway network namespaces for tests.
package netnstest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/boxlite/boxlite-shim/runtime/netns"
)

// New makes an empty network namespace, bound at a file under the test's
// temporary directory, and removes it when the test ends. It skips the test
// where namespaces cannot be made (not root).
func New(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("not root: cannot make network namespaces")
	}
	path := filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// The namespace outlives its thread: it is bound at path.
	if err := netns.InNew(func() error {
		return unix.Mount("/proc/thread-self/ns/net", path, "", unix.MS_BIND, "")
	}); err != nil {
		t.Fatalf("new network namespace: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(path, unix.MNT_DETACH) })
	return path
}

// Sh runs a shell command line in the network namespace at netns and returns
// its output; it fails the test if the command fails.
func Sh(t *testing.T, netns, cmdline string) string {
	t.Helper()
	out, err := exec.Command("nsenter", "--net="+netns, "sh", "-c", cmdline).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", cmdline, err, out)
	}
	return string(out)
}
