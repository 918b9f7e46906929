package config

import (
	"fmt"
	"strconv"

	"github.com/containerd/errdefs"

	"github.com/boxlite/boxlite-shim/kernel"
)

// Request is what a sandbox asks of its VM, read once from its annotations
// (those that passed containerd's pod_annotations list) under this
// configuration: the kernel variant and the VM's size.
type Request struct {
	Kernel    kernel.Name
	CPUs      int
	MemoryMiB int
}

// asked holds the io.boxlite.* values an annotation map gave, each checked
// and parsed once; zero values mean "not given".
type asked struct {
	kernel    kernel.Name
	cpus      int
	memoryMiB int
}

// Request reads a sandbox's annotations: the shim's own gate first
// (CheckAnnotations), then the kernel variant (io.boxlite.kernel, else
// [kernel] default, allowed by [kernel] allowed) and the size:
// io.boxlite.cpus / io.boxlite.memory_mib where given, else, for a CRI pod
// sandbox, its limits — vCPUs the pod's CPU quota/period rounded up, memory
// the pod's memory limit plus vm.overhead_memory_mib, bounded by vm.max_cpus
// and vm.max_memory_mib — else vm.cpus / vm.memory_mib. Every error matches
// errdefs.ErrInvalidArgument and says what is accepted.
func (c *Config) Request(annotations map[string]string) (Request, error) {
	a, err := c.read(annotations)
	if err != nil {
		return Request{}, err
	}
	k, err := kernel.Choose(a.kernel, c.KernelPolicy())
	if err != nil {
		return Request{}, err
	}
	r := Request{Kernel: k, CPUs: c.VM.CPUs, MemoryMiB: c.VM.MemoryMiB}
	if annotations[AnnotationContainerType] == ContainerTypeSandbox {
		c.podSize(annotations, &r)
	}
	if a.cpus > 0 {
		r.CPUs = a.cpus
	}
	if a.memoryMiB > 0 {
		r.MemoryMiB = a.memoryMiB
	}
	return r, nil
}

// podSize sizes a pod's VM from the CRI sandbox annotations (see Request).
func (c *Config) podSize(ann map[string]string, r *Request) {
	quota, _ := strconv.ParseInt(ann[AnnotationSandboxCPUQuota], 10, 64)
	period, _ := strconv.ParseInt(ann[AnnotationSandboxCPUPeriod], 10, 64)
	if quota > 0 && period > 0 {
		n := (quota + period - 1) / period
		r.CPUs = int(min(max(n, 1), int64(c.VM.MaxCPUs)))
	}
	if mem, _ := strconv.ParseInt(ann[AnnotationSandboxMemory], 10, 64); mem > 0 {
		mib := (mem+(1<<20)-1)>>20 + int64(c.VM.OverheadMemoryMiB)
		r.MemoryMiB = int(min(max(mib, MinMemoryMiB), int64(c.VM.MaxMemoryMiB)))
	}
}

// Admit is the gate of a container joining the sandbox r was read for
// (container id of pod sandboxID): its io.boxlite.* annotations pass the
// shim's gate, and any it gives must ask for the VM that runs: only the
// sandbox's annotations choose the kernel and the VM's size.
func (r Request) Admit(c *Config, id, sandboxID string, annotations map[string]string) error {
	a, err := c.read(annotations)
	if err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	if a.kernel != "" && a.kernel != r.Kernel {
		return fmt.Errorf("container %s asks for kernel %q (annotation %s), but its pod %s runs the %q kernel: only the pod sandbox's annotations choose the kernel; set %s on the pod, or remove it from the container: %w",
			id, a.kernel, AnnotationKernel, sandboxID, r.Kernel, AnnotationKernel, errdefs.ErrInvalidArgument)
	}
	for _, f := range []struct {
		key        string
		want, have int
	}{{AnnotationCPUs, a.cpus, r.CPUs}, {AnnotationMemory, a.memoryMiB, r.MemoryMiB}} {
		if f.want > 0 && f.want != f.have {
			return fmt.Errorf("container %s asks for %s=%d, but its pod %s's VM has %d: only the pod sandbox's annotations size the VM: %w",
				id, f.key, f.want, sandboxID, f.have, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}
