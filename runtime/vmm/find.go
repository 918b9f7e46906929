package vmm

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/boxlite/boxlite-shim/reaper"
)

// Recognising a VMM after its shim is gone (`shim delete`): not by its
// command name, which krun_start_enter renames ("libkrun VM", or
// "VM:<hostname>"), but by its executable, and as the init of a PID
// namespace of its own one level below ours (Start makes it so). A process
// libkrun or the test double forks from it runs the same executable, but is
// not its namespace's PID 1, or (the test double's stand-in for the guest's
// init, PID 1 of the guest's PID namespace) is one level further down.

// IsVMM reports whether pid is a boxlite-vmm VMM process.
func IsVMM(pid int) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || filepath.Base(strings.TrimSuffix(exe, " (deleted)")) != VMMBinaryName {
		return false
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(v) // from our PID namespace (that of /proc) down
			return len(f) == 2 && f[1] == "1"
		}
	}
	return false
}

// Find lists the VMM processes jailed in dir (a sandbox's directory: their
// command line has -jail dir).
func Find(dir string) []int {
	if dir == "" {
		return nil
	}
	want := []byte("\x00-jail\x00" + dir + "\x00")
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !IsVMM(pid) {
			continue
		}
		if cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && bytes.Contains(cmdline, want) {
			out = append(out, pid)
		}
	}
	return out
}

// KillOrphan SIGKILLs the process group pgid of a VMM whose shim is gone, if
// it still is a VMM's (its leader is one, or a member runs boxlite-vmm or
// the agent: the leader may be gone while the workload lives on), and waits
// until the group is empty. The group is not the caller's to reap (its
// members were reparented when the shim died), so this only waits.
func KillOrphan(ctx context.Context, pgid int) error {
	if unix.Kill(-pgid, 0) != nil {
		return nil // gone already
	}
	if !IsVMM(pgid) && !groupIsOurs(pgid) {
		return nil // the PID was reused by something else
	}
	deadline := time.Now().Add(10 * time.Second)
	for unix.Kill(-pgid, 0) == nil {
		_ = unix.Kill(-pgid, unix.SIGKILL)
		if time.Now().After(deadline) {
			return fmt.Errorf("process group %d of the VMM is still there 10s after SIGKILL", pgid)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// groupIsOurs reports whether some member of group pgid runs boxlite-vmm or
// the agent.
func groupIsOurs(pgid int) bool {
	for _, pid := range reaper.GroupMembers(pgid) {
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		switch filepath.Base(strings.TrimSuffix(exe, " (deleted)")) {
		case VMMBinaryName, "boxlite-agent":
			return true
		}
	}
	return false
}
