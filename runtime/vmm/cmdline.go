package vmm

import (
	"fmt"
	"strings"
)

// libkrun passes the workload's path, its arguments and its environment to
// the guest on the kernel command line (krun_set_exec), and the guest
// kernel hands them to libkrun's init, which hands them to the workload.
// Two sets of limits apply, and neither fails with an error a caller sees:
//
//   - libkrun's (x86_64): a command line of at most 64 KiB
//     (CMDLINE_MAX_SIZE) of printable ASCII; anything else makes libkrun
//     panic inside krun_start_enter (Cmdline::insert_str(...).unwrap()),
//     which aborts the VMM;
//   - the guest kernel's (init/main.c, CONFIG_INIT_ENV_ARG_LIMIT=32 in
//     libkrunfw's config and the net kernel's): init gets at most 32
//     environment variables besides HOME and TERM's first slots, and 32
//     arguments after its name; one more and the kernel panics in
//     start_kernel, before any console is up, so nothing is shown and
//     libkrun exits 0.
//
// cmdlineProblems tells which of them a configuration breaks, to explain a
// VMM that ended that way (exitedError).

const (
	cmdlineMax  = 0x10000 // libkrun's CMDLINE_MAX_SIZE on x86_64
	maxInitArgs = 32      // MAX_INIT_ARGS = CONFIG_INIT_ENV_ARG_LIMIT
	maxInitEnvs = 32      // MAX_INIT_ENVS
	krunCmdline = "reboot=k panic=-1 panic_print=0 nomodule console=hvc0 rootfstype=virtiofs rw quiet no-kvmapf init=/init.krun"
	tsiWordLen  = len(" tsi_hijack")
)

// cmdlineProblems says how this VMM's kernel command line breaks libkrun's
// limits (libkrun: the VMM aborts) or the guest kernel's (guest: the VMM
// exits 0), "" for each it does not.
func (c *Config) cmdlineProblems() (libkrun, guest string) {
	var b strings.Builder
	b.WriteString(krunCmdline)
	krunEnv := []string{"KRUN_INIT=" + c.Workload[0]}
	if c.Workdir != "" {
		krunEnv = append(krunEnv, "KRUN_WORKDIR="+c.Workdir)
	}
	for _, e := range krunEnv {
		b.WriteString(" " + e)
	}
	for _, e := range c.Env {
		b.WriteString(` "` + e + `"`)
	}
	b.WriteString(" --")
	for _, a := range c.Workload[1:] {
		b.WriteString(` "` + a + `"`)
	}
	line := b.String()
	for i := 0; i < len(line); i++ {
		if line[i] < ' ' || line[i] > '~' {
			return fmt.Sprintf("its kernel command line has the byte 0x%02x, outside printable ASCII (in the workload, its arguments, working directory or environment), which makes libkrun panic in krun_start_enter", line[i]), ""
		}
	}
	// The virtio_mmio.device= words of the devices and tsi_hijack add a
	// little more.
	if len(line)+tsiWordLen+1 > cmdlineMax {
		return fmt.Sprintf("its kernel command line is about %d bytes, over libkrun's %d (CMDLINE_MAX_SIZE), which makes libkrun panic in krun_start_enter", len(line), cmdlineMax), ""
	}

	// init/main.c: unknown_bootoption for name=value before "--" (a name
	// with a "." is taken for a module parameter and dropped), set_init_arg
	// for each argument after it.
	envp := []string{"HOME=/", "TERM=linux"}
	panicAt := func(kind, param string) string {
		return fmt.Sprintf("the guest kernel takes at most %d arguments and %d environment variables for init (CONFIG_INIT_ENV_ARG_LIMIT): "+
			"with %d arguments and %d environment entries (KRUN_INIT and KRUN_WORKDIR included) it panics at boot (\"Too many boot %s vars at `%s'\"), "+
			"before its console is up, and libkrun exits 0", maxInitArgs, maxInitEnvs, len(c.Workload)-1, len(krunEnv)+len(c.Env), kind, param)
	}
	for _, e := range append(krunEnv, c.Env...) {
		name, _, ok := strings.Cut(e, "=")
		if !ok {
			continue // a bare word: init's argv, counted below
		}
		if strings.Contains(name, ".") {
			continue
		}
		i := 0
		for ; i < len(envp); i++ {
			if i == maxInitEnvs {
				return "", panicAt("env", name)
			}
			if strings.HasPrefix(envp[i], name+"=") {
				break
			}
		}
		if i == len(envp) {
			envp = append(envp, e)
		} else {
			envp[i] = e
		}
	}
	argc := 1 // "init"
	for _, e := range c.Env {
		if !strings.Contains(e, "=") && !strings.Contains(e, ".") {
			if argc == maxInitArgs+1 {
				return "", panicAt("init", e)
			}
			argc++
		}
	}
	for _, a := range c.Workload[1:] {
		if argc == maxInitArgs+1 {
			return "", panicAt("init", a)
		}
		argc++
	}
	return "", ""
}
