// Package jail prepares a container's process, in a re-execution of the
// agent binary (the hidden subcommands InitCmd and ExecCmd, run by Main), and
// then execs the container's program.
//
// It owns joining namespaces, the container's mount namespace (its
// propagation, the spec's mounts made inside the root filesystem, /dev and
// device nodes, pivot_root, masked and read-only paths), sysctls and the
// hostname, the PTY, the process's identity (rlimits, user and groups,
// capabilities, no_new_privs), finding the program, and the messages of the
// sync socket between the agent and its child (Msg, Conn).
//
// The root filesystem is the image's and its symlinks are not to be trusted:
// a path of the spec is resolved inside it as if it were "/" (symlinks never
// lead out, ".." stops at it), and what is made or mounted there goes through
// handles opened from the root (filepath-securejoin's pathrs-lite, openat2
// RESOLVE_IN_ROOT where the kernel has it), never through a path that could
// be swapped between a check and its use (inroot.go).
//
// It runs on one locked thread of a process that is about to exec: it keeps
// no state, starts no goroutines that outlive it, and waits for no child. It
// knows nothing of the agent's containers, cgroups or API; what it needs
// comes in Config. In the agent's own process only CloneFlag and the agent's
// end of the sync socket (NewSyncPair, Conn) are used.
package jail
