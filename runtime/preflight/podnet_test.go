package preflight

import (
	"os"
	"testing"
)

// This host's kernel has TAP, sch_ingress, cls_u32 and act_mirred: the
// check passes, and leaves no device in the host's namespace.
func TestPodNetwork(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: cannot make network namespaces")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("this host has no /dev/net/tun (%v): pods could not get their network here", err)
	}
	r := PodNetwork()
	if r.Status != Pass {
		t.Fatalf("pod network check: %+v", r)
	}
	for _, name := range []string{"probe0", "probe1"} {
		if _, err := os.Stat("/sys/class/net/" + name); err == nil {
			t.Errorf("%s was made in the host's network namespace", name)
		}
	}
}
