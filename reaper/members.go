package reaper

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// GroupMembers lists the processes (zombies too) in process group pgid, as
// /proc shows them. It reaps nothing.
func GroupMembers(pgid int) []int {
	ents, _ := os.ReadDir("/proc")
	want := strconv.Itoa(pgid)
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if i := strings.LastIndexByte(string(b), ')'); err == nil && i >= 0 {
			// After the comm: state ppid pgrp ...
			if f := strings.Fields(string(b[i+1:])); len(f) > 2 && f[2] == want {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}
