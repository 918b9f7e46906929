// Package reaper is a scoped child reaper for the BoxLite containerd shim.
//
// # Why it exists
//
// A containerd runtime v2 shim is a child subreaper (PR_SET_CHILD_SUBREAPER,
// set by containerd's pkg/shim unless NoSubreaper is true), and containerd's
// default reaper answers every SIGCHLD with wait4(-1). That reaps *every*
// exited child of the process, including children started and owned by
// other code (an exec.Cmd run by a library, a helper started by os/exec):
// their own exec.Cmd.Wait then fails with ECHILD ("waitid: no child
// processes") and their exit status is lost. The shim therefore runs with
// containerd's reaper disabled (NoReaper=true) and uses this package instead.
//
// # What it owns
//
// A [Reaper] waits only for what has been registered with it:
//
//   - processes started through [Reaper.Start] or registered with
//     [Reaper.Register] (tracked through a pidfd where the kernel has
//     pidfd_open and waitid(P_PIDFD), so a recycled PID is never confused
//     with the registered process; wait4(pid) otherwise);
//   - process groups registered with [Reaper.RegisterGroup]: every child of
//     ours in that group, including orphans that were reparented to us because
//     we are a subreaper. A group member that is also registered as a
//     [Process] gets its exit delivered to that Process.
//
// It listens for SIGCHLD with os/signal (it never changes the signal's
// disposition) and, on each signal and once right after each registration,
// polls exactly the registered PIDs and groups with WNOHANG.
//
// # What it must never do
//
// It never calls wait4(-1), waitid(P_ALL) or any other wait that could reap a
// child nobody registered: a child that is not registered is left (as a
// zombie, if it has exited) for its owner's Wait. It never waits for the
// shim's own process group. Callers must not register PIDs or groups they do
// not own, and must not call exec.Cmd.Wait (or os.Process.Wait) for a process
// given to the reaper: the reaper owns that wait.
//
// A registered process that somebody else reaped first is reported as an
// [Exit] with Unknown set, never as a hang.
package reaper
