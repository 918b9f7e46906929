// Package guest is the guest suite: the shim end to end with real guest
// kernels under it, driven with the real containerd 2.4, ctr and crictl. Its
// sandboxes run on the emulated engine (test/libkrun-qemu: libkrun's API,
// the staged lean or net kernel booted under QEMU's software emulation, the
// real agent as the guest's workload), which stands in for libkrun + KVM
// where no guest can boot under KVM; so what needs a guest kernel is tested
// here: legacy iptables in net and not in lean, `uname -r`, OOM kills and
// cgroup statistics from the guest's cgroups, the pod network on a virtio-net
// device, and the faults of a real guest (its VMM killed, its kernel
// panicking, a kernel that never boots). The stress suites (random kills,
// cycles, density) stay on the host double (test/e2e): under emulation each
// boot costs seconds of CPU. After each test nothing of ours is left: no
// shim, VMM, agent, QEMU, virtiofsd or vhost-device-vsock process, no mount,
// socket, state directory, network namespace or cgroup.
package guest

import (
	"fmt"
	"os"
	"testing"

	"github.com/boxlite/boxlite-shim/test/ctrd"
)

// tempPrefixes are this suite's temporary directories (os.MkdirTemp).
var tempPrefixes = []string{"bxg", "bxgs"}

func TestMain(m *testing.M) {
	// Every suite says which engine its sandboxes ran on.
	fmt.Println("guest suite: engine:", engineWords)
	os.Exit(ctrd.RunSuite(m, "guest", func() []string {
		left := ctrd.SuiteLeftovers(tempPrefixes...)
		for _, p := range engineProcesses() {
			left = append(left, "process: "+p)
		}
		left = append(left, ctrd.PodDirs()...)
		return append(left, ctrd.PodMounts("/bxg")...)
	}))
}
