// Package guest is the guest agent (cmd/boxlite-agent): the side of the agent
// API (runtime/agent/api) that runs inside the micro-VM, or on the host under
// the libkrun test double.
//
// It owns the agent's ttrpc service and the connection handshake, the table
// of containers and their processes (stdio pipes or PTY masters, exit
// statuses, output draining), the event log and the OOM watch, each
// container's cgroup v2 leaf (limits, stats, freezing), the reaper of the
// guest, the agent's flags (ParseFlags: its own, whatever else the guest's
// init passes on), its role in the guest and what that makes it set up
// (DecideRole, Prepare, SetupGuest: init, the workload of libkrun's init, or
// neither) and the agent's listener (vsock, or the sockets the test double
// passes).
//
// The reaper is the only place in the agent that waits for a child: every
// process the agent forks goes through it, and so do the orphans reparented
// to the agent (it is the guest's init, or a child subreaper: as the workload
// of libkrun's init, or on a host).
//
// It does not set up a container's process itself: namespaces, mounts, the
// root filesystem, identity and the PTY are done by a re-execution of the
// agent binary in the container's namespaces (package jail), which guest
// starts and drives over the sync socket. It must not change what the agent
// API says (runtime/agent/api), and it imports nothing of the shim's host
// side: the agent is one static binary.
package guest
