package reaper

import (
	"os/exec"
	"slices"
	"syscall"
	"testing"
)

func TestGroupMembers(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 60 & exec sleep 60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Skipf("no sh to stand in for a process group: %v", err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL); _ = cmd.Wait() })
	var got []int
	for range 200 { // the background sleep is forked asynchronously
		if got = GroupMembers(pgid); len(got) == 2 {
			break
		}
		syscall.Nanosleep(&syscall.Timespec{Nsec: 10e6}, nil)
	}
	if len(got) != 2 || !slices.Contains(got, pgid) {
		t.Errorf("members of group %d: %v, want the leader and its background child", pgid, got)
	}
	if m := GroupMembers(1<<22 + 7); len(m) != 0 {
		t.Errorf("members of a group that cannot exist: %v", m)
	}
}
