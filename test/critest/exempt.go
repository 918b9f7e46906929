package critest

// Engine is what runs boxlite's guest in this harness.
const Engine = "libkrun test double (the guest agent runs as a host process)"

// ByDesign are the specs runc passes that a micro-VM pod cannot honour: each
// is refused with the error given (README, "CRI conformance").
var ByDesign = []Exemption{
	{
		Spec:  "runtime should support HostNetwork is true",
		Why:   "a micro-VM cannot share the host's network namespace (its VMM, and through TSI its guest, would reach the host's services)",
		Error: "a micro-VM cannot share the host's network namespace",
	},
	{
		Spec:  "runtime should support portforward in host network",
		Why:   "hostNetwork pods are refused",
		Error: "a micro-VM cannot share the host's network namespace",
	},
	{
		Spec:  "runtime should support HostIpc is true",
		Why:   "the guest has its own IPC namespace and kernel: the host's SysV segments cannot be shared",
		Error: "a micro-VM's guest has its own IPC namespace and cannot share the host's",
	},
	{
		Spec:  "mount with 'rshared' should support propagation from host to container and vice versa",
		Why:   "Bidirectional propagation: a mount made in the guest cannot propagate back to the host across virtio-fs",
		Error: "Bidirectional mount propagation (rshared) is not supported",
	},
}

// NeedsGuestKernel are the specs that fail under the libkrun test double
// only: its guest agent runs as a host process, on this host's hybrid
// cgroups (no cgroup v2 memory controller) and on the host's mounts.
// TestCRIValidation runs them again on the emulated engine (EngineHandler),
// where a guest kernel runs them, and fails unless each passes there.
var NeedsGuestKernel = []Exemption{
	{Spec: "should terminate with exitCode 137 and reason OOMKilled", Why: "the OOM kill is the guest cgroup v2 memory controller's; the host has none"},
	{Spec: "runtime should support listing container stats", Why: "container memory stats come from the guest's cgroup v2 memory controller"},
	{Spec: "runtime should support listing pod sandbox metrics", Why: "pod metrics come from the guest's cgroup v2 memory controller"},
	{Spec: "NoNewPrivs should allow privilege escalation when false", Why: "the double's agent executes the setuid program through the host's mount of the rootfs, which the VM boundary mounts nosuid; a guest kernel's virtio-fs mount honours setuid"},
}

// Exemptions are the lists that apply to engine.
func Exemptions(engine string) map[string][]Exemption {
	l := map[string][]Exemption{"by design": ByDesign}
	if engine == Engine {
		l["needs a real guest kernel"] = NeedsGuestKernel
	}
	return l
}
