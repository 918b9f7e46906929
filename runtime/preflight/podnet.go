package preflight

import (
	"fmt"

	"github.com/boxlite/boxlite-shim/runtime/netns"
	"github.com/boxlite/boxlite-shim/runtime/podnet"
)

// PodNetwork checks that this node's kernel can give pods their network the
// way package podnet does (a TAP device, an ingress qdisc, a u32 filter
// with a mirred redirect), in a throwaway network namespace: nothing of it
// outlives the check.
func PodNetwork() Result {
	r := Result{Name: "pod network"}
	err := netns.InNew(func() error {
		a, err := podnet.AddTap("probe0")
		if err != nil {
			return err
		}
		b, err := podnet.AddTap("probe1")
		if err != nil {
			return err
		}
		return podnet.Redirect(a, b)
	})
	if err != nil {
		r.Status = Fail
		r.Detail = fmt.Sprintf("pods cannot be given their network (TAP + tc mirred redirect): %v", err)
		r.Fix = "load the kernel modules tun, sch_ingress, cls_u32 and act_mirred (modprobe), or use a kernel built with them"
		return r
	}
	r.Status = Pass
	r.Detail = "TAP devices and tc ingress redirection (u32, mirred) work"
	return r
}
