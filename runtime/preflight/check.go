package preflight

import (
	"fmt"

	"github.com/boxlite/boxlite-shim/config"
)

// Check runs every node check in order: KVM, a vCPU, libkrun, each allowed
// kernel, pod networking, and a boot probe; then says whether the emulated
// test engine is available (informational: tests only).
func Check(cfg *config.Config) []Result {
	kvm := KVM()
	results := []Result{kvm}
	if kvm.Status == Fail {
		results = append(results, Result{Name: "vcpu", Status: Skip, Detail: "needs a usable /dev/kvm"})
	} else {
		results = append(results, VCPU())
	}
	lib, info := Libkrun(cfg)
	results = append(results, lib)
	rows := Kernels(cfg)
	results = append(results, kernelResults(rows)...)
	results = append(results, PodNetwork())
	results = append(results, Boot(cfg, info, kvm.Status != Fail, rows))
	return append(results, TestEngine())
}

// kernelResults checks each allowed variant: available, readable, verified.
func kernelResults(rows []KernelRow) []Result {
	var out []Result
	for _, r := range rows {
		if !r.Allowed {
			continue
		}
		res := Result{Name: "kernel " + string(r.Name)}
		switch {
		case r.Err != nil:
			res.Status = Fail
			res.Detail = r.Err.Error()
		default:
			res.Status = Pass
			src := r.Source.Path
			if r.Source.Embedded {
				src = "embedded, extracted to " + r.Source.Path
			}
			res.Detail = fmt.Sprintf("%s (sha256 %s, verified); %s", src, short(r.Source.SHA256), r.Features)
		}
		out = append(out, res)
	}
	return out
}
