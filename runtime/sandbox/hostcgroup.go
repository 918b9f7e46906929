package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/boxlite/boxlite-shim/reaper"
)

// hostCgroupDirs are the host directories of the cgroup at cgroupsPath (the
// cgroupfs form CRI gives, "/parent/id"): one per cgroup v1 hierarchy on a
// v1 or hybrid host, as runc would make for the pod's pause process (it is
// where containerd's CRI reads a pod's stats), else the cgroup v2 one.
func hostCgroupDirs(cgroupsPath string) ([]string, error) {
	if !filepath.IsAbs(cgroupsPath) || strings.Contains(cgroupsPath, ":") {
		return nil, fmt.Errorf("cgroupsPath %q: only the cgroupfs form (/parent/name) is supported, not systemd's (slice:prefix:name)", cgroupsPath)
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var v1 []string
	v2 := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		mp := strings.Fields(pre)[4]
		switch strings.Fields(post)[0] {
		case "cgroup":
			v1 = append(v1, mp)
		case "cgroup2":
			v2 = mp
		}
	}
	var dirs []string
	for _, m := range v1 {
		dirs = append(dirs, filepath.Join(m, cgroupsPath))
	}
	if len(dirs) == 0 && v2 != "" {
		dirs = append(dirs, filepath.Join(v2, cgroupsPath))
	}
	return dirs, nil
}

// placeInHostCgroup moves the VMM's process group (the VMM, and under the
// test double the agent) into the pod's cgroup on the host. It returns the
// directories it created, deepest first, for cleanup.
func placeInHostCgroup(cgroupsPath string, pgid int) (created []string, err error) {
	dirs, err := hostCgroupDirs(cgroupsPath)
	if err != nil {
		return nil, err
	}
	pids := reaper.GroupMembers(pgid)
	var errs []error
	for _, d := range dirs {
		var made []string
		for p := d; ; p = filepath.Dir(p) {
			if _, err := os.Stat(p); err == nil {
				break
			}
			made = append(made, p)
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		created = append(created, made...)
		for _, pid := range pids {
			if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("move %d into %s: %w", pid, d, err))
			}
		}
	}
	return created, errors.Join(errs...)
}
