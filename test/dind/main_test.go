// Package dind is the docker-in-docker suite: a CRI pod of the boxlite-net
// runtime class runs Debian's dockerd (the dind test image `make deps`
// builds) in a real guest with the net kernel, which loads an image, runs a
// container and publishes a port through docker's NAT; the same pod on the
// lean kernel (runtime class boxlite) fails with dockerd's iptables error,
// and the shim says which runtime class to use. The guests run on libkrun
// where `check` finds it able to boot them, and otherwise on the emulated
// engine (test/libkrun-qemu: QEMU's software emulation beneath libkrun's
// API). `make demo-dind` runs this suite verbosely. After the suite nothing
// of ours is left: no shim, VMM, agent, QEMU, virtiofsd or
// vhost-device-vsock process, no mount, socket, state directory or cgroup.
package dind

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/boxlite/boxlite-shim/test/ctrd"
)

// tempPrefix names this suite's temporary directories (os.MkdirTemp).
const tempPrefix = "bxd"

func TestMain(m *testing.M) {
	os.Exit(ctrd.RunSuite(m, "dind", func() []string {
		// Ours are the processes of this checkout's binaries (other
		// checkouts on the host may run theirs outside the suites' lock).
		bin := os.Getenv("BOXLITE_BIN")
		if bin == "" {
			bin, _ = filepath.Abs(filepath.Join("..", "..", "bin"))
		}
		var left []string
		for _, l := range ctrd.SuiteLeftovers(tempPrefix) {
			if !strings.HasPrefix(l, "processes: ") {
				left = append(left, l)
			}
		}
		for _, p := range ctrd.OurProcesses() {
			if p.Exe == "" || strings.HasPrefix(p.Exe, bin+"/") {
				left = append(left, fmt.Sprintf("process: %d %s (%s)", p.Pid, p.Exe, p.State))
			}
		}
		for _, p := range engineProcesses(bin) {
			left = append(left, "process: "+p)
		}
		for _, g := range []string{"/run/bxp*", filepath.Join(os.TempDir(), "bxp*")} {
			if m, _ := filepath.Glob(g); len(m) > 0 {
				left = append(left, fmt.Sprint("directories: ", m))
			}
		}
		for _, mnt := range ctrd.MountsUnder("/") {
			if strings.Contains(mnt, "/bxp") || strings.Contains(mnt, "/"+tempPrefix) {
				left = append(left, "mount: "+mnt)
			}
		}
		return left
	}))
}
