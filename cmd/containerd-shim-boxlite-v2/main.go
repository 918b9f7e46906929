// Command containerd-shim-boxlite-v2 is the containerd runtime v2 shim that
// runs each sandbox in its own libkrun micro-VM. containerd starts it for the
// runtime names io.boxlite.v2 and io.containerd.boxlite.v2.
//
// Besides containerd's protocol (start, delete, -info, -v) it answers a few
// operator commands: `kernels` lists the kernel variants it can boot and how
// each guest kernel is hardened, and `check` is a node preflight.
package main

import (
	"context"
	"fmt"
	"os"
	goruntime "runtime"

	"github.com/containerd/containerd/v2/pkg/shim"
	"golang.org/x/sys/unix"

	"github.com/boxlite/boxlite-shim/kernel"
	"github.com/boxlite/boxlite-shim/runtime/manager"
	"github.com/boxlite/boxlite-shim/runtime/task"
	"github.com/boxlite/boxlite-shim/runtime/version"
)

func main() {
	if len(os.Args) >= 2 {
		switch os.Args[1] {
		case "-v", "-version", "--version":
			printVersion()
			return
		case "kernels", "check", "config-example":
			os.Exit(operatorCommand(os.Args[1], os.Args[2:]))
		}
	}
	// containerd's pkg/shim serves the shim's socket from the inherited fd 3
	// without ever closing it, and it is not close-on-exec: every VMM the
	// daemon starts would inherit the listening socket, and a VMM that
	// outlives a crashed shim would keep it answering, so that containerd
	// sends new containers to a dead shim. Close-on-exec it, first thing.
	unix.CloseOnExec(3)
	task.Register()
	// The shim stays a child subreaper (orphans of our VMMs come back to
	// us), but containerd's global wait4(-1) reaper is off: package reaper
	// waits only for the processes the shim registered.
	shim.RunShim(context.Background(), manager.New(version.Name), func(c *shim.Config) {
		c.NoReaper = true
	})
}

func printVersion() {
	fmt.Printf("%s:\n", "containerd-shim-boxlite-v2")
	fmt.Println("  Version:         ", version.Version)
	fmt.Println("  Revision:        ", version.Revision)
	fmt.Println("  Go version:      ", goruntime.Version())
	fmt.Print("  Embedded kernels: ")
	emb := kernel.Embedded()
	if len(emb) == 0 {
		fmt.Print("none (taken from [kernel.paths] in the config)")
	}
	for i, n := range emb {
		if i > 0 {
			fmt.Print(", ")
		}
		fmt.Print(n)
	}
	fmt.Println()
}
