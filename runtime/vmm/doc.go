// Package vmm owns one sandbox's VMM process: staging the chosen kernel,
// launching boxlite-vmm (which dlopens libkrun and never returns from
// krun_start_enter), waiting until the guest agent's vsock bridge is ready,
// and stopping it. It does not talk to the agent and never touches container
// root filesystems: those belong to the callers.
//
// # Kernel staging
//
// libkrun loads its kernel from the library "libkrunfw.so.5", by soname,
// once per process. Start stages the sandbox's kernel variant as
// <StateDir>/krunfw/libkrunfw.so.5, a symlink to [kernel.Source].Path, puts
// that directory first on the VMM's LD_LIBRARY_PATH, and has boxlite-vmm load
// it by that path before libkrun (-krunfw), so libkrun gets exactly that
// object and cannot fall back to another libkrunfw on the system. Because the
// symlink is resolved when the file is mapped, /proc/<vmm-pid>/maps names the
// real blob: the variant is observable.
//
// # Processes
//
// The VMM runs with its state directory as cwd, stdout and stderr in
// <StateDir>/vmm.log, in a process group of its own. It is started through
// the scoped reaper, which also reaps the orphans of its group (the shim is a
// subreaper). Stop kills the whole group.
//
// # Network
//
// Config.NetNS is the namespace the VMM is born in (a pod's). Config.Net adds
// the guest's virtio-net device on a TAP device of that namespace (made and
// wired by package podnet); without it libkrun gives the guest TSI, whose
// sockets are the VMM's, but only with a kernel that has libkrunfw's TSI
// patch (kernel.Inspect: the lean kernel). With TSI on libkrun appends
// "tsi_hijack" to the kernel command line; a kernel without the patch (the
// net kernel, or one that cannot be told) hands the word to init and the
// workload, and libkrun's init sets up a dummy0 for TSI. So such a kernel
// never gets TSI (boxlite-vmm -no-tsi): without Config.Net its guest has no
// network.
//
// # Limits
//
// Start refuses more vCPUs than libkrun's MP table holds (254) or than the
// kernel brings up (kernel.CheckCPUs: CONFIG_NR_CPUS where the image tells,
// 16 for libkrunfw's). boxlite-vmm refuses a libkrun older than 1.18.1
// (exit 8, ErrFailedPrecondition). A workload, arguments and environment
// beyond what libkrun's kernel command line or the guest kernel takes end
// the VMM without a word of why (a libkrun panic; a guest kernel panic and
// exit 0): the error then says which limit (cmdline.go).
//
// # Exit status
//
// The VMM's exit status never stands for a container's exit status. Before
// krun_start_enter it is boxlite-vmm's own (see cmd/boxlite-vmm); after, it is
// whatever libkrun _exit()s with: the workload's (the agent's) status, 125–127
// when the guest's init failed, but also 1 when a vCPU failed. Containers'
// exit statuses come from the agent; a VMM exit that the agent did not report
// is a sandbox failure.
//
// # The libkrun test double
//
// Where no guest can boot, tests substitute test/libkrun-double for libkrun.
// The double is used only when Config.LibkrunPath names it explicitly; Start
// then logs a warning every time. boxlite-vmm refuses the double found any
// other way.
package vmm
