package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/boxlite/boxlite-shim/runtime/sandbox"
)

// proc is what the bench reads of a process in /proc.
type proc struct {
	Pid, PPid, PGid int
	Exe             string // base name of /proc/PID/exe
}

// readProc reads pid's parent, process group and executable.
func readProc(pid int) (proc, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return proc{}, err
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return proc{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(s[i+1:]) // state ppid pgrp ...
	if len(f) < 3 {
		return proc{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	p := proc{Pid: pid}
	p.PPid, _ = strconv.Atoi(f[1])
	p.PGid, _ = strconv.Atoi(f[2])
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	p.Exe = filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
	return p, nil
}

// allProcs lists every process readable in /proc.
func allProcs() map[int]proc {
	ents, _ := os.ReadDir("/proc")
	out := map[int]proc{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, err := readProc(pid); err == nil {
			out[pid] = p
		}
	}
	return out
}

// rssMiB is pid's resident set size (VmRSS) in MiB.
func rssMiB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest) // "1234 kB"
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseFloat(f[0], 64)
				if err != nil {
					return 0, err
				}
				return kb / 1024, nil
			}
		}
	}
	return 0, fmt.Errorf("pid %d: no VmRSS in /proc/%d/status", pid, pid)
}

// shimPid is the PID of the shim serving task id of the containerd at
// address: containerd 2.4 writes no shim.pid, so it is the process running
// exe whose arguments hold "-id ID" and the daemon's address.
func shimPid(exe, id, address string) (int, error) {
	var found []int
	for pid, p := range allProcs() {
		if p.Exe != exe {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		hasID, hasAddr := false, false
		for i, a := range args {
			if a == "-id" && i+1 < len(args) && args[i+1] == id {
				hasID = true
			}
			if a == address || strings.HasPrefix(a, address) {
				hasAddr = true
			}
		}
		if hasID && hasAddr {
			found = append(found, pid)
		}
	}
	if len(found) != 1 {
		return 0, fmt.Errorf("%d processes of %s serve task %s of %s, want 1", len(found), exe, id, address)
	}
	return found[0], nil
}

// sandboxPids finds a running boxlite sandbox's VMM (from the sandbox record
// in its bundle) and its guest agent: under the libkrun test double the
// agent is a host process descending from the VMM, or in its process group.
func sandboxPids(bundle string) (vmm, agent int, err error) {
	b, err := os.ReadFile(filepath.Join(bundle, sandbox.RecordName))
	if err != nil {
		return 0, 0, err
	}
	var r sandbox.Record
	if err := json.Unmarshal(b, &r); err != nil {
		return 0, 0, fmt.Errorf("%s: %w", sandbox.RecordName, err)
	}
	if r.VMMPid <= 0 {
		return 0, 0, fmt.Errorf("%s names no VMM", sandbox.RecordName)
	}
	procs := allProcs()
	for pid, p := range procs {
		if p.Exe != "boxlite-agent" {
			continue
		}
		if p.PGid == r.VMMPid || descends(procs, pid, r.VMMPid) {
			// The agent's own children (the container's processes) run
			// other executables; the first agent below the VMM is it.
			if agent == 0 || descends(procs, agent, pid) {
				agent = pid
			}
		}
	}
	if agent == 0 {
		return r.VMMPid, 0, fmt.Errorf("no boxlite-agent process below VMM %d", r.VMMPid)
	}
	return r.VMMPid, agent, nil
}

// descends reports whether pid has ancestor among its parents.
func descends(procs map[int]proc, pid, ancestor int) bool {
	for i := 0; i < 64; i++ {
		p, ok := procs[pid]
		if !ok || p.PPid <= 1 {
			return false
		}
		if p.PPid == ancestor {
			return true
		}
		pid = p.PPid
	}
	return false
}
