package sandbox

import (
	"strconv"

	"github.com/boxlite/boxlite-shim/config"
)

// Annotations containerd's CRI puts on a pod's containers.
const (
	AnnotationContainerType = "io.kubernetes.cri.container-type"
	AnnotationSandboxID     = "io.kubernetes.cri.sandbox-id"
	// ContainerTypeSandbox is the pod's sandbox (pause) container: it boots
	// the pod's VM. ContainerTypeContainer joins it.
	ContainerTypeSandbox   = "sandbox"
	ContainerTypeContainer = "container"

	AnnotationSandboxCPUPeriod = "io.kubernetes.cri.sandbox-cpu-period"
	AnnotationSandboxCPUQuota  = "io.kubernetes.cri.sandbox-cpu-quota"
	AnnotationSandboxMemory    = "io.kubernetes.cri.sandbox-memory"
)

// PodResources sizes a pod's VM from the CRI sandbox annotations: vCPUs are
// the pod's CPU limit (quota/period) rounded up, memory is the pod's memory
// limit plus vm.overhead_memory_mib, both bounded by vm.max_cpus and
// vm.max_memory_mib. Where the pod sets no limit, or io.boxlite.cpus /
// io.boxlite.memory_mib is given (and so passed CheckAnnotations), res (the
// configured size, or the annotation's) stays.
func PodResources(cfg *config.Config, ann map[string]string, res config.Resources) config.Resources {
	if _, ok := ann[config.AnnotationCPUs]; !ok {
		quota, _ := strconv.ParseInt(ann[AnnotationSandboxCPUQuota], 10, 64)
		period, _ := strconv.ParseInt(ann[AnnotationSandboxCPUPeriod], 10, 64)
		if quota > 0 && period > 0 {
			n := (quota + period - 1) / period
			res.CPUs = int(min(max(n, 1), int64(cfg.VM.MaxCPUs)))
		}
	}
	if _, ok := ann[config.AnnotationMemory]; !ok {
		mem, _ := strconv.ParseInt(ann[AnnotationSandboxMemory], 10, 64)
		if mem > 0 {
			mib := (mem+(1<<20)-1)>>20 + int64(cfg.VM.OverheadMemoryMiB)
			res.MemoryMiB = int(min(max(mib, config.MinMemoryMiB), int64(cfg.VM.MaxMemoryMiB)))
		}
	}
	return res
}
