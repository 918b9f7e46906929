package guest

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Flags are the agent's own command-line flags (cmd/boxlite-agent).
type Flags struct {
	// VsockPort is the vsock port the agent API is served on (-vsock-port).
	VsockPort uint
	// CgroupRoot is the cgroup v2 directory under which each container gets
	// its leaf (-cgroup-root).
	CgroupRoot string
	// Init is -init: auto, yes or no (see DecideRole).
	Init string
	// Network is the JSON file describing the guest's network interface
	// (-network; runtime/podnet), "" for none.
	Network string
	// ReadyPort is the host's vsock port to announce readiness on once
	// serving (-ready-port; 0: none).
	ReadyPort uint
}

// flagNames are the agent's own flags; every one takes a value.
var flagNames = []string{"vsock-port", "cgroup-root", "init", "network", "ready-port"}

// ParseFlags parses the agent's arguments (os.Args[1:]).
//
// The agent owns exactly the flags of Flags (-vsock-port, -cgroup-root,
// -init, -network, -ready-port, each with a value, as -name value or -name=value). Any
// other word that does not start with "-" is not the agent's and is
// skipped, wherever it is, and returned in ignored: under libkrun the agent
// is the workload of libkrun's init, which hands it init's own argv, that is
// every word of the kernel command line that the guest kernel did not know,
// ahead of the agent's arguments (for example "tsi_hijack", which libkrun
// adds when TSI is on, from a kernel without libkrunfw's TSI patch). A "--"
// ends the flags: what follows is ignored too. An unknown flag (a word
// starting with "-") is still an error, as is a flag without its value.
func ParseFlags(args []string) (f Flags, ignored []string, err error) {
	fs := flag.NewFlagSet("boxlite-agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.UintVar(&f.VsockPort, "vsock-port", 1024, "vsock port to serve the agent API on")
	fs.StringVar(&f.CgroupRoot, "cgroup-root", "/sys/fs/cgroup/boxlite", "cgroup v2 directory under which each container gets its leaf")
	fs.StringVar(&f.Init, "init", "auto", "act as the guest's init: auto, yes, no")
	fs.StringVar(&f.Network, "network", "", "JSON file describing the guest's network interface (runtime/podnet)")
	fs.UintVar(&f.ReadyPort, "ready-port", 0, "vsock port of the host to announce readiness on once serving (0: none)")
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				err = fmt.Errorf("flag provided but not defined: -help")
			}
			return Flags{}, nil, fmt.Errorf("%w (the agent's flags: -%s)", err, strings.Join(flagNames, ", -"))
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return f, ignored, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return f, append(ignored, rest...), nil // "--" ends the flags
		}
		// The flag package stops at the first word that is not a flag
		// (and drops a "--" before it): skip it and go on.
		ignored = append(ignored, rest[0])
		args = rest[1:]
	}
}
