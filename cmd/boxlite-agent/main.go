// Command boxlite-agent is the guest agent of a boxlite micro-VM: the VM's
// workload, it serves the agent API (runtime/agent/api) on vsock and runs the
// pod's containers inside the guest.
//
//	boxlite-agent [-vsock-port 1024] [-cgroup-root /sys/fs/cgroup/boxlite] [-init auto|yes|no]
//	              [-network FILE] [-ready-port PORT]
//
// These five flags are the agent's own; any other word (not starting with
// "-") is ignored and logged: libkrun's init hands the agent the kernel
// command-line words the guest kernel did not know, before its arguments
// ("tsi_hijack" from a kernel without libkrunfw's TSI patch). See
// guest.ParseFlags.
//
// Listening: on AF_VSOCK, port -vsock-port; when LISTEN_FDS is set (the libkrun
// test double, which runs the agent as a host process, passes the bridge's
// listening Unix sockets as fds 3.. with BOXLITE_VSOCK_PORTS listing their
// ports in fd order), on the inherited socket whose port is -vsock-port.
//
// -network FILE (written by the shim, see runtime/podnet) gives the guest's
// virtio-net interface the pod's MTU, addresses and routes before the API is
// served; failing that, the agent exits 1 and says why on the console.
//
// SIGTERM or SIGINT make it kill its containers, clean up and exit 0, as
// the Shutdown call does.
//
// -init auto (the default) decides from the agent's place in its PID
// namespace (guest.DecideRole): as PID 1 it is the guest's init; as a child
// of PID 1 it is the workload of the guest's init, which is how libkrun runs
// it (init.krun forks it, having mounted /dev, /proc, /sys and
// /sys/fs/cgroup, made / rshared, and nothing for /tmp), and how the libkrun
// test double runs it. In both it makes / rslave and mounts /proc, /sys,
// /dev, /sys/fs/cgroup and a tmpfs on /tmp where they are missing; as init
// it reaps every process of the guest, otherwise it makes itself a child
// subreaper, so that the orphans of its containers still come back to it.
// -init no does no mounts (a child subreaper), -init yes does them anyway.
//
// Containers are started through re-executions of this binary: the hidden
// subcommands "init-container" and "exec-process" (package
// runtime/guest/jail) prepare a process in the container's namespaces and then
// exec the container's program.
//
// This file is wiring only: flags, init mode, signals, the listener and the
// re-exec dispatch. What the agent does is in runtime/guest.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/boxlite/boxlite-shim/runtime/guest"
	"github.com/boxlite/boxlite-shim/runtime/guest/jail"
	"github.com/boxlite/boxlite-shim/runtime/podnet"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case jail.InitCmd, jail.ExecCmd:
			runtime.LockOSThread()
			os.Exit(jail.Main(os.Args[1]))
		}
	}
	log.SetFlags(log.Lmicroseconds)
	log.SetPrefix("boxlite-agent: ")

	flags, ignored, err := guest.ParseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "boxlite-agent: %v\n", err)
		os.Exit(2)
	}
	if len(ignored) > 0 {
		log.Printf("ignoring arguments that are not the agent's (kernel command-line words passed on by the guest's init): %q", ignored)
	}
	role, err := guest.DecideRole(flags.Init, os.Getpid(), os.Getppid())
	if err != nil {
		log.Fatalf("%v", err)
	}
	warnings, err := guest.Prepare(role)
	if err != nil {
		log.Fatalf("%v", err)
	}
	if flags.Network != "" {
		iface, err := podnet.ReadFile(flags.Network)
		if err == nil {
			err = podnet.Configure(iface)
		}
		if err != nil {
			log.Fatalf("the pod network cannot be set up: %v", err)
		}
		log.Printf("network: %s up with %v (MTU %d)", iface.MAC, iface.Addrs, iface.MTU)
	}
	// Catch, never ignore, the signals that would end a plain process: an
	// ignored disposition would be inherited by every container process.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGPIPE, syscall.SIGTERM, syscall.SIGINT)

	l, err := guest.Listen(uint32(flags.VsockPort))
	if err != nil {
		log.Fatalf("listen: %v", err)
	}
	a, err := guest.New(flags.CgroupRoot, warnings)
	if err != nil {
		log.Fatalf("%v", err)
	}
	go func() {
		for s := range sigs {
			if s == syscall.SIGTERM || s == syscall.SIGINT {
				log.Printf("%v: shutting down", s)
				a.Shutdown()
				unix.Sync()
				os.Exit(0)
			}
			log.Printf("ignoring signal %v", s)
		}
	}()
	log.Printf("serving on %s (port %d), %s, pid %d, %s", l.Addr(), flags.VsockPort, a.Environment(), os.Getpid(), role)
	for _, w := range a.Warnings() {
		log.Printf("warning: %s", w)
	}
	if flags.ReadyPort != 0 {
		// The listener is up: connections queue until Serve accepts them.
		if err := guest.SignalReady(uint32(flags.ReadyPort)); err != nil {
			log.Fatalf("announcing readiness: %v", err)
		}
	}
	code := a.Serve(context.Background(), l)
	os.Exit(code)
}
