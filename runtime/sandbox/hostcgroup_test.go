package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/cgroups/v3"
)

func TestParseSystemdCgroupsPath(t *testing.T) {
	for _, tc := range []struct {
		in               string
		slice, unit, dir string
	}{
		{"kubepods-besteffort-pod12.slice:cri-containerd:abc", "kubepods-besteffort-pod12.slice", "cri-containerd-abc.scope",
			"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/cri-containerd-abc.scope"},
		{"kubepods.slice:cri-containerd:abc", "kubepods.slice", "cri-containerd-abc.scope", "/kubepods.slice/cri-containerd-abc.scope"},
		{":cri-containerd:abc", "system.slice", "cri-containerd-abc.scope", "/system.slice/cri-containerd-abc.scope"},
		{"-.slice::abc", "-.slice", "abc.scope", "/abc.scope"},
	} {
		sc, err := parseSystemdCgroupsPath(tc.in)
		if err != nil || sc.slice != tc.slice || sc.unit != tc.unit || sc.dir != tc.dir {
			t.Errorf("%q: %+v %v; want slice %s unit %s dir %s", tc.in, sc, err, tc.slice, tc.unit, tc.dir)
		}
	}
	for _, bad := range []string{
		"kubepods.slice:cri-containerd",         // two parts
		"kubepods:cri-containerd:abc",           // not a slice
		"kube--pods.slice:cri-containerd:abc",   // empty component
		"-kubepods.slice:cri-containerd:abc",    // empty first component
		"a/b.slice:cri-containerd:abc",          // a path
		".slice:cri-containerd:abc",             // no name
		"kubepods.slice:cri-containerd:",        // no name
		"kubepods.slice:cri-containerd:x.slice", // a slice, not a scope
		"kubepods.slice:cri-containerd:a/b",     // a path
	} {
		if sc, err := parseSystemdCgroupsPath(bad); err == nil {
			t.Errorf("%q accepted: %+v", bad, sc)
		}
	}
}

// The scope's properties are runc's for a container's scope: what systemd
// is asked for.
func TestScopeProperties(t *testing.T) {
	sc, err := parseSystemdCgroupsPath("kubepods-pod1.slice:cri-containerd:abc")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode cgroups.CGMode
		io   string
	}{{cgroups.Unified, "IOAccounting"}, {cgroups.Hybrid, "BlockIOAccounting"}, {cgroups.Legacy, "BlockIOAccounting"}} {
		got := map[string]any{}
		for _, p := range scopeProperties(sc, []int{41, 42}, tc.mode) {
			got[p.Name] = p.Value.Value()
		}
		want := map[string]any{
			"Description":         "boxlite sandbox VMM cri-containerd-abc.scope",
			"Slice":               "kubepods-pod1.slice",
			"PIDs":                []uint32{41, 42},
			"Delegate":            true,
			"DefaultDependencies": false,
			"MemoryAccounting":    true,
			"CPUAccounting":       true,
			"TasksAccounting":     true,
			tc.io:                 true,
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("mode %v: properties\n%v\nwant\n%v", tc.mode, got, want)
		}
	}
}

func TestPlacementError(t *testing.T) {
	ok := func(string, []int) error { return nil }
	fail := func(string, []int) error { return errors.New("no space left on device") }
	dir := func(g string) string { return filepath.Join(t.TempDir(), g) }
	_, err := joinHierarchies([]hierarchy{
		{name: "cpu", dir: dir, join: ok},
		{name: "cpuset", dir: dir, join: fail},
		{name: "memory", dir: dir, join: ok},
		{dir: dir, join: fail},
	}, "/pod/sb", []int{1})
	want := "the VMM is not in the pod's cgroup /pod/sb for: cpuset (no space left on device); unified (cgroup v2) (no space left on device); it is for: cpu, memory"
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	_, err = joinHierarchies([]hierarchy{{name: "cpu", dir: dir, join: fail}}, "/pod/sb", nil)
	if err == nil || !strings.HasSuffix(err.Error(), "it is in none of the pod's cgroups") {
		t.Errorf("nothing joined: %v", err)
	}
	if _, err := joinHierarchies([]hierarchy{{name: "cpu", dir: dir, join: ok}}, "/pod/sb", nil); err != nil {
		t.Errorf("all joined: %v", err)
	}
}

func TestRefusedCgroupsPaths(t *testing.T) {
	for _, bad := range []string{"relative/p1", "", "kubepods:cri-containerd:p1"} {
		if _, err := placeInHostCgroup(bad, os.Getpid()); err == nil {
			t.Errorf("cgroupsPath %q accepted", bad)
		}
	}
}

// TestPlaceInHostCgroup places a process group in a cgroupfs-form path on
// this host: it lands in the path in every hierarchy (on a v1 or hybrid
// host, cpuset included: a new cpuset cgroup has no cpus or mems until they
// are copied from its parent; before, the move failed with ENOSPC).
func TestPlaceInHostCgroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if cgroups.Mode() == cgroups.Unavailable {
		t.Skip("no cgroups mounted")
	}
	group := fmt.Sprintf("/bxtest-%d/pod/sb", os.Getpid())
	pid := sleeper(t)
	created, err := placeInHostCgroup(group, pid)
	t.Cleanup(func() {
		killSleeper(pid)
		for _, d := range created {
			if err := removeCgroup(d); err != nil {
				t.Error(err)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	hs, err := hostHierarchies(false)
	if err != nil {
		t.Fatal(err)
	}
	got := procCgroups(t, pid)
	var names []string
	for _, h := range hs {
		names = append(names, h.name)
		if got[h.name] != group {
			t.Errorf("hierarchy %q: the process is in %q, want %q", h.name, got[h.name], group)
		}
		if !slices.Contains(created, h.dir(group)) || !slices.Contains(created, h.dir(filepath.Dir(filepath.Dir(group)))) {
			t.Errorf("hierarchy %q: %s and its new parents are not among the created directories %v", h.name, h.dir(group), created)
		}
	}
	if cgroups.Mode() != cgroups.Unified && !slices.Contains(names, "cpuset") {
		t.Errorf("no cpuset among this host's hierarchies %v", names)
	}
	t.Logf("hierarchies: %v", names)
}

// sleeper starts a process in a process group of its own.
func sleeper(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sleep", "1000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd.Process.Pid
}

// killSleeper kills the sleeper and waits until it has left its cgroups.
func killSleeper(pid int) {
	_ = syscall.Kill(pid, syscall.SIGKILL)
	var ws syscall.WaitStatus
	_, _ = syscall.Wait4(pid, &ws, 0, nil)
}

// procCgroups is /proc/PID/cgroup: each controller of each hierarchy
// ("name=systemd", "" for the unified one) and the process's cgroup in it.
func procCgroups(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		for _, c := range strings.Split(f[1], ",") { // co-mounted: cpu,cpuacct
			out[c] = f[2]
		}
	}
	return out
}
