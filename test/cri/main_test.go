// Package cri drives a private containerd 2.4 with its CRI plugin through
// the real crictl: pods run by the boxlite and boxlite-net handlers of
// deploy/containerd/boxlite.toml, one VM (through the libkrun test double)
// per pod, on a private CNI bridge network. After each test nothing of ours
// is left: no process, mount, socket, network namespace, bridge or cgroup.
package cri

import (
	"fmt"
	"os"
	"testing"

	"github.com/boxlite/boxlite-shim/test/ctrd"
)

func TestMain(m *testing.M) {
	fmt.Println("cri suite: engine:", ctrd.DoubleWords)
	// Not ctrd.SuiteLeftovers: benchmarks may run shims beside us.
	os.Exit(ctrd.RunSuite(m, "cri", func() []string { return ctrd.PodLeftovers(nil, nil) }))
}
