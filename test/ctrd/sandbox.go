package ctrd

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// ShimConfig is the head of a shim configuration (TOML) naming the libkrun
// library and the shim's state and cache directories; a suite appends its
// own keys and tables.
func ShimConfig(libkrun, stateDir, cacheDir string) string {
	return fmt.Sprintf("libkrun_path = %q\nstate_dir = %q\ncache_dir = %q\n", libkrun, stateDir, cacheDir)
}

// Bundle is the bundle of container id's task in the daemon's state (ctr's
// namespace).
func (d *Daemon) Bundle(id string) string {
	return filepath.Join(d.State, "io.containerd.runtime.v2.task", "boxlite-test", id)
}

// AssertNoSandboxState fails the test if a sandbox's directory is left in
// the shim's state directory (one directory a namespace, one a sandbox in
// it).
func AssertNoSandboxState(t testing.TB, stateDir string) {
	t.Helper()
	ents, err := os.ReadDir(stateDir)
	if err != nil {
		return
	}
	var left []string
	for _, e := range ents {
		sub, _ := os.ReadDir(filepath.Join(stateDir, e.Name()))
		for _, x := range sub {
			left = append(left, filepath.Join(e.Name(), x.Name()))
		}
	}
	if len(left) > 0 {
		t.Errorf("sandbox state left in %s: %v", stateDir, left)
	}
}
