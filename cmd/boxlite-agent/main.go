// Command boxlite-agent is the guest agent of a boxlite micro-VM: the VM's
// workload (PID 1), it serves the agent API (runtime/agent/api) on vsock and
// runs the pod's containers inside the guest.
//
//	boxlite-agent [-vsock-port 1024] [-cgroup-root /sys/fs/cgroup/boxlite] [-init auto|yes|no]
//	              [-network FILE]
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
// As init (PID 1, or -init yes) it makes the mount tree private, mounts /proc,
// /sys, /dev, /sys/fs/cgroup and /tmp where they are missing, and reaps every
// process of the guest. Otherwise it makes itself a child subreaper, so that
// the orphans of its containers still come back to it.
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
	"flag"
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

	port := flag.Uint("vsock-port", 1024, "vsock port to serve the agent API on")
	cgroupRoot := flag.String("cgroup-root", "/sys/fs/cgroup/boxlite", "cgroup v2 directory under which each container gets its leaf")
	initMode := flag.String("init", "auto", "act as the guest's init (mount /proc, /sys, /dev, cgroup2, /tmp): auto (when PID 1), yes, no")
	network := flag.String("network", "", "JSON file describing the guest's network interface (runtime/podnet)")
	readyPort := flag.Uint("ready-port", 0, "vsock port of the host to announce readiness on once serving (0: none)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "boxlite-agent: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}

	var asInit bool
	switch *initMode {
	case "auto":
		asInit = os.Getpid() == 1
	case "yes":
		asInit = true
	case "no":
	default:
		log.Fatalf("-init %q: want auto, yes or no", *initMode)
	}

	var warnings []string
	if asInit {
		warnings = guest.SetupGuest()
	}
	if *network != "" {
		iface, err := podnet.ReadFile(*network)
		if err == nil {
			err = podnet.Configure(iface)
		}
		if err != nil {
			log.Fatalf("the pod network cannot be set up: %v", err)
		}
		log.Printf("network: %s up with %v (MTU %d)", iface.MAC, iface.Addrs, iface.MTU)
	}
	if os.Getpid() != 1 {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			log.Fatalf("become child subreaper: %v", err)
		}
	}
	// Catch, never ignore, the signals that would end a plain process: an
	// ignored disposition would be inherited by every container process.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGPIPE, syscall.SIGTERM, syscall.SIGINT)

	l, err := guest.Listen(uint32(*port))
	if err != nil {
		log.Fatalf("listen: %v", err)
	}
	a, err := guest.New(*cgroupRoot, warnings)
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
	log.Printf("serving on %s (port %d), %s, pid %d", l.Addr(), *port, a.Environment(), os.Getpid())
	for _, w := range a.Warnings() {
		log.Printf("warning: %s", w)
	}
	if *readyPort != 0 {
		// The listener is up: connections queue until Serve accepts them.
		if err := guest.SignalReady(uint32(*readyPort)); err != nil {
			log.Fatalf("announcing readiness: %v", err)
		}
	}
	code := a.Serve(context.Background(), l)
	os.Exit(code)
}
