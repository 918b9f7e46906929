package ctrd

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// EngineProcesses lists the emulated engine's helpers still running, each
// as "PID ARGS": QEMU started with the engine's boot stub, virtiofsd serving
// a guest root the way the engine starts it, the engine's
// vhost-device-vsock. (The VMM and the engine's launcher run boxlite-vmm:
// OurProcesses has them.) Other QEMUs on the host are not ours.
func EngineProcesses() []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		args := strings.ReplaceAll(string(cmdline), "\x00", " ")
		switch c := strings.TrimSpace(string(comm)); {
		case c == "qemu-system-x86" && strings.Contains(args, "/libkrun-qemu/bootstub"),
			c == "virtiofsd" && strings.Contains(args, "source=/proc/self/fd/3/."),
			strings.HasPrefix(c, "vhost-device-vs") && strings.Contains(exe, "/libkrun-qemu/"):
			out = append(out, fmt.Sprintf("%d %s", pid, args))
		}
	}
	return out
}
