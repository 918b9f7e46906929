package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/boxlite/boxlite-shim/config"
	"github.com/boxlite/boxlite-shim/runtime/preflight"
	"github.com/containerd/log"
)

// operatorCommand runs one of the commands an operator types on a node and
// returns the process exit code.
func operatorCommand(name string, args []string) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	cfgPath := fs.String("config", "", "configuration file (default "+config.DefaultPath+")")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if name == "config-example" {
		fmt.Print(config.Example)
		return 0
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	switch name {
	case "kernels":
		rows := preflight.Kernels(cfg)
		preflight.PrintKernels(os.Stdout, rows)
		printHardening(os.Stdout, rows)
		for _, r := range rows {
			if r.Err == nil {
				return 0
			}
		}
		return 1
	case "check":
		// The boot probe runs the shim's sandbox code, which logs as a shim
		// does; here only its warnings (e.g. "test double") belong.
		_ = log.SetLevel("warn")
		if !preflight.Print(os.Stdout, preflight.Check(cfg)) {
			return 1
		}
		return 0
	}
	return 2
}
