package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/boxlite/boxlite-shim/reaper"
	"github.com/boxlite/boxlite-shim/runtime/cgmount"
)

// A pod sandbox's VMM goes where runc would put the pod's pause process: in
// the cgroup of the sandbox container's cgroupsPath, in every hierarchy of
// the host that runc uses, so that what reads the pod's cgroup (CRI's pod
// stats, the kubelet's eviction and limits) counts the VM. The cgroups are
// made and joined with containerd's cgroups library (cgroup1: each v1
// controller, copying cpuset.cpus and cpuset.mems from the parents as runc
// does, since a new cpuset cgroup starts with none and takes no process;
// the unified hierarchy by hand), and, for the systemd form of
// cgroupsPath, through a transient scope of systemd (hostcgroup_systemd.go).

// hierarchy is one cgroup hierarchy of the host the VMM joins.
type hierarchy struct {
	// name is the hierarchy as /proc/PID/cgroup names it: its controllers
	// ("cpuset", "name=systemd"), or "" for the unified (v2) one.
	name string
	// dir is the host directory of cgroup group in it.
	dir func(group string) string
	// join makes group in it and moves pids there.
	join func(group string, pids []int) error
}

// hostHierarchies are the hierarchies of the host runc would place a pod's
// pause process in by path: each v1 controller's (and systemd's named one)
// on a v1 or hybrid host, plus the unified one on a hybrid host; the
// unified one alone on a v2 host. systemdManaged leaves out those a systemd
// scope already placed the processes in (name=systemd, and the unified
// hierarchy, which systemd owns).
func hostHierarchies(systemdManaged bool) ([]hierarchy, error) {
	mode := cgroups.Mode()
	var hs []hierarchy
	switch mode {
	case cgroups.Unavailable:
		return nil, errors.New("no cgroup hierarchy is mounted at /sys/fs/cgroup")
	case cgroups.Legacy, cgroups.Hybrid:
		subs, err := cgroup1.Default()
		if err != nil {
			return nil, fmt.Errorf("cgroup v1 hierarchies: %w", err)
		}
		for _, s := range subs {
			if systemdManaged && s.Name() == "systemd" || !isCgroupMount(s.(interface{ Path(string) string }).Path("/")) {
				continue
			}
			hs = append(hs, v1Hierarchy(s))
		}
	}
	if mode == cgroups.Hybrid || mode == cgroups.Unified {
		if mp := cgmount.Unified(); !systemdManaged && mp != "" {
			hs = append(hs, v2Hierarchy(mp))
		}
	}
	return hs, nil
}

// isCgroupMount reports whether dir is a cgroup v1 file system (cgroup1
// takes any directory of the controller's name under /sys/fs/cgroup for
// one: a systemd in a container leaves empty ones of those it does not
// mount).
func isCgroupMount(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.CGROUP_SUPER_MAGIC
}

// v1Hierarchy is cgroup v1 subsystem s (cgroup1 makes a cpuset cgroup with
// its parents' cpus and mems).
func v1Hierarchy(s cgroup1.Subsystem) hierarchy {
	name := string(s.Name())
	if name == "systemd" {
		name = "name=systemd"
	}
	path := s.(interface{ Path(string) string }).Path
	return hierarchy{
		name: name,
		dir:  path,
		join: func(group string, pids []int) error {
			cg, err := cgroup1.New(cgroup1.StaticPath(group), &specs.LinuxResources{},
				cgroup1.WithHierarchy(func() ([]cgroup1.Subsystem, error) { return []cgroup1.Subsystem{s}, nil }))
			if err != nil {
				return fmt.Errorf("make %s: %w", path(group), err)
			}
			return addEach(pids, func(pid int) error { return cg.AddProc(uint64(pid)) })
		},
	}
}

// v2Hierarchy is the unified hierarchy mounted at mount. (cgroup2's
// manager would do no more here than mkdir and a write, and brings eBPF
// code into the shim.)
func v2Hierarchy(mount string) hierarchy {
	dir := func(group string) string { return filepath.Join(mount, group) }
	return hierarchy{
		dir: dir,
		join: func(group string, pids []int) error {
			d := dir(group)
			if err := os.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("make %s: %w", d, err)
			}
			return addEach(pids, func(pid int) error {
				return os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
			})
		},
	}
}

// addEach moves each of pids with add; one that has exited meanwhile is no
// error.
func addEach(pids []int, add func(int) error) error {
	var errs []error
	for _, pid := range pids {
		if err := add(pid); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("move %d: %w", pid, err))
		}
	}
	return errors.Join(errs...)
}

// placeInHostCgroup moves the VMM's process group (the VMM, and under the
// test double the agent) into the pod's cgroup on the host, cgroupsPath in
// the cgroupfs form (/parent/name) or systemd's (slice:prefix:name). It
// returns the directories it created, deepest first, for cleanup (a systemd
// scope's own go with it once it is empty). Its error names each hierarchy
// the VMM could not join, and those it did.
func placeInHostCgroup(cgroupsPath string, pgid int) (created []string, err error) {
	pids := reaper.GroupMembers(pgid)
	group := cgroupsPath
	systemdManaged := false
	switch {
	case strings.Contains(cgroupsPath, ":"):
		sc, err := parseSystemdCgroupsPath(cgroupsPath)
		if err != nil {
			return nil, err
		}
		if err := startScope(sc, pids); err != nil {
			return nil, fmt.Errorf("cgroupsPath %q: %w", cgroupsPath, err)
		}
		group, systemdManaged = sc.dir, true
	case !filepath.IsAbs(cgroupsPath):
		return nil, fmt.Errorf("cgroupsPath %q: neither an absolute cgroup path (/parent/name) nor systemd's slice:prefix:name", cgroupsPath)
	}
	hs, err := hostHierarchies(systemdManaged)
	if err != nil {
		return nil, fmt.Errorf("cgroupsPath %q: %w", cgroupsPath, err)
	}
	return joinHierarchies(hs, group, pids)
}

// joinHierarchies makes group in each of hs and moves pids there.
func joinHierarchies(hs []hierarchy, group string, pids []int) (created []string, err error) {
	pe := &placementError{group: group}
	seen := map[string]bool{}
	for _, h := range hs {
		d := h.dir(group)
		var made []string
		for p := d; !seen[p]; p = filepath.Dir(p) {
			if _, err := os.Stat(p); err == nil {
				break
			}
			made = append(made, p)
		}
		err := h.join(group, pids)
		for _, p := range made {
			if _, serr := os.Stat(p); serr == nil && !seen[p] {
				seen[p] = true
				created = append(created, p)
			}
		}
		name := h.name
		if name == "" {
			name = "unified (cgroup v2)"
		}
		if err != nil {
			pe.failed = append(pe.failed, fmt.Sprintf("%s (%v)", name, err))
		} else {
			pe.joined = append(pe.joined, name)
		}
	}
	if len(pe.failed) > 0 {
		return created, pe
	}
	return created, nil
}

// placementError says in which hierarchies the VMM is not in the pod's
// cgroup, and in which it is.
type placementError struct {
	group          string
	failed, joined []string
}

func (e *placementError) Error() string {
	msg := fmt.Sprintf("the VMM is not in the pod's cgroup %s for: %s", e.group, strings.Join(e.failed, "; "))
	if len(e.joined) > 0 {
		msg += fmt.Sprintf("; it is for: %s", strings.Join(e.joined, ", "))
	} else {
		msg += "; it is in none of the pod's cgroups"
	}
	return msg
}
