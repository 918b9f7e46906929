package config

// Annotations containerd's CRI puts on a pod's containers: which shim (and
// VM) a container joins, whether it is the pod's sandbox, and the pod's
// limits, which size the VM. They are read only here and in Request.
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
