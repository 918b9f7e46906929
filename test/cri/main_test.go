// Package cri drives a private containerd 2.4 with its CRI plugin through
// the real crictl: pods run by the boxlite and boxlite-net handlers of
// deploy/containerd/boxlite.toml, one VM (through the libkrun test double)
// per pod, on a private CNI bridge network. After each test nothing of ours
// is left: no process, mount, socket, network namespace, bridge or cgroup.
package cri

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/boxlite/boxlite-shim/test/ctrd"
)

func TestMain(m *testing.M) {
	fmt.Println("cri suite: engine:", ctrd.DoubleWords)
	// Not ctrd.SuiteLeftovers: benchmarks may run shims beside us.
	os.Exit(ctrd.RunSuite(m, "cri", func() []string {
		var left []string
		for _, m := range ctrd.MountsUnder("/") {
			if strings.Contains(m, "/bxp") {
				left = append(left, "mount: "+m)
			}
		}
		for _, c := range ctrd.CgroupsLeft("boxlite-k8s.io-") {
			left = append(left, "cgroup: "+c)
		}
		for _, g := range []string{"/run/bxp*", filepath.Join(os.TempDir(), "bxp*")} {
			if m, _ := filepath.Glob(g); len(m) > 0 {
				left = append(left, fmt.Sprint("directories: ", m))
			}
		}
		return left
	}))
}
