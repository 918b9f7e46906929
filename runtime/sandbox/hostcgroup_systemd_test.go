package sandbox

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// inPrivateSystemd is set in the environment of this test binary when it
// runs inside a private systemd's namespaces (TestSystemdScope).
const inPrivateSystemd = "BOXLITE_TEST_IN_PRIVATE_SYSTEMD"

// TestSystemdScope places a process group with a systemd-form cgroupsPath,
// against a real systemd: one started as PID 1 of private PID, mount,
// cgroup, UTS and IPC namespaces, rooted at a cgroup of its own, with its
// own D-Bus socket (/run/systemd/private in its mount namespace). The test
// binary runs again inside those namespaces, where the shim's code finds
// that systemd the way it finds the host's. It checks that systemd made
// the scope (delegated, in the slice) with the processes in it, that they
// are in the scope's cgroup in every hierarchy (the v1 ones systemd does
// not manage, cpuset among them, joined by path), and that the scope goes
// once its processes have exited.
func TestSystemdScope(t *testing.T) {
	if os.Getenv(inPrivateSystemd) != "" {
		systemdScopeInside(t)
		return
	}
	sd := startPrivateSystemd(t)
	out, err := sd.run(t, os.Args[0], "-test.run", "^TestSystemdScope$", "-test.v", "-test.count=1", "-test.timeout=2m")
	t.Logf("inside the private systemd's namespaces:\n%s", out)
	if err != nil {
		t.Fatalf("the test inside the private systemd's namespaces: %v", err)
	}
	if !strings.Contains(out, "--- PASS: TestSystemdScope") {
		t.Fatal("the test inside the private systemd's namespaces did not pass")
	}
}

func systemdScopeInside(t *testing.T) {
	pid := sleeper(t)
	cgroupsPath := fmt.Sprintf("bxtest-pod%d.slice:cri-containerd:sb%d", pid, pid)
	sc, err := parseSystemdCgroupsPath(cgroupsPath)
	if err != nil {
		t.Fatal(err)
	}
	created, err := placeInHostCgroup(cgroupsPath, pid)
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
	got := procCgroups(t, pid)
	var names []string
	for name := range procCgroups(t, os.Getpid()) {
		names = append(names, name)
		if got[name] != sc.dir {
			t.Errorf("hierarchy %q: the process is in %q, want the scope's %q", name, got[name], sc.dir)
		}
	}
	slices.Sort(names)
	t.Logf("hierarchies: %q", names)
	// What the shim made by path is in the v1 hierarchies systemd does not
	// manage; the scope's cgroup in systemd's own is systemd's.
	for _, d := range created {
		if strings.HasPrefix(d, "/sys/fs/cgroup/systemd/") || strings.HasPrefix(d, "/sys/fs/cgroup/unified/") {
			t.Errorf("the shim made %s, in a hierarchy systemd manages", d)
		}
	}
	cpusetScope := filepath.Join("/sys/fs/cgroup/cpuset", sc.dir)
	if slices.Contains(names, "cpuset") && !slices.Contains(created, cpusetScope) {
		t.Errorf("the scope's cpuset cgroup %s is not among those made by path: %v", cpusetScope, created)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := systemdConnect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if u, err := conn.GetUnitNameByPID(ctx, uint32(pid)); err != nil || u != sc.unit {
		t.Errorf("systemd has the process in unit %q (%v), want %s", u, err, sc.unit)
	}
	scope, err := conn.GetUnitTypePropertiesContext(ctx, sc.unit, "Scope")
	if err != nil {
		t.Fatal(err)
	}
	if scope["Delegate"] != true || scope["Slice"] != sc.slice {
		t.Errorf("scope %s: Delegate=%v Slice=%v, want true and %s", sc.unit, scope["Delegate"], scope["Slice"], sc.slice)
	}

	killSleeper(pid)
	deadline := time.Now().Add(20 * time.Second)
	for {
		u, err := conn.GetUnitPropertiesContext(ctx, sc.unit)
		if err != nil {
			t.Fatal(err)
		}
		if u["LoadState"] == "not-found" || u["ActiveState"] == "inactive" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("scope %s still %v/%v after its process exited", sc.unit, u["LoadState"], u["ActiveState"])
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, d := range created {
		if err := removeCgroup(d); err != nil {
			t.Error(err)
		}
	}
	created = nil
	if _, err := os.Stat(cpusetScope); !os.IsNotExist(err) {
		t.Errorf("%s is left: %v", cpusetScope, err)
	}
}

// privateSystemd is a systemd running as PID 1 of namespaces of its own.
type privateSystemd struct {
	pid   int      // its host PID
	roots []string // its root cgroup in each hierarchy (host directories)
}

// startPrivateSystemd starts systemd in new PID, mount, cgroup, UTS and IPC
// namespaces, with a cgroup of its own (bxsd-<pid>) in each of the host's
// hierarchies as its root, the same hierarchies mounted rooted there, a
// tmpfs /run, and a boot target with no dependencies (it starts no service
// of the host's). t.Cleanup kills it and removes its cgroups.
func startPrivateSystemd(t *testing.T) *privateSystemd {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	systemd := ""
	for _, p := range []string{"/lib/systemd/systemd", "/usr/lib/systemd/systemd"} {
		if _, err := os.Stat(p); err == nil {
			systemd = p
			break
		}
	}
	if systemd == "" {
		t.Skip("systemd is not installed (no /lib/systemd/systemd)")
	}
	for _, c := range []string{"unshare", "nsenter"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("%s (util-linux) is not installed", c)
		}
	}
	mounts := cgroupMounts(t)
	if len(mounts) == 0 {
		t.Skip("no cgroup hierarchy mounted under /sys/fs/cgroup")
	}
	controllers := v1Controllers(t)
	name := fmt.Sprintf("bxsd-%d", os.Getpid())
	sd := &privateSystemd{}
	var rootProcs []string
	script := []string{"set -e", "umount -R -l /sys/fs/cgroup"}
	if mounts[0].point == "/sys/fs/cgroup" && mounts[0].fstype == "cgroup2" {
		script = append(script, "mount -t cgroup2 cgroup2 /sys/fs/cgroup")
	} else {
		script = append(script, "mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup")
	}
	for _, m := range mounts {
		root := filepath.Join(m.point, name)
		if err := os.Mkdir(root, 0o755); err != nil {
			t.Fatal(err)
		}
		copyCpuset(t, root)
		rootProcs = append(rootProcs, filepath.Join(root, "cgroup.procs"))
		sd.roots = append(sd.roots, root)
		if m.point == "/sys/fs/cgroup" {
			continue
		}
		opts := "" // cgroup2: none of the host's (nsdelegate is the init namespace's)
		if m.fstype == "cgroup" {
			opts = "-o " + v1MountOptions(m.options, controllers)
		}
		script = append(script, fmt.Sprintf("mkdir -p %s; mount -t %s %s %s %s", m.point, m.fstype, opts, m.fstype, m.point))
	}
	t.Cleanup(func() {
		for _, r := range sd.roots {
			if err := removeCgroup(r); err != nil {
				t.Error(err)
			}
		}
	})
	script = append(script,
		"mount -t tmpfs -o mode=755 tmpfs /run",
		"mkdir -p /run/systemd/system",
		`printf '[Unit]\nDescription=boxlite test boot\nDefaultDependencies=no\n' > /run/systemd/system/bxtest.target`,
		"export container=boxlite-test",
		"exec "+systemd+" --unit=bxtest.target",
	)
	launch := `for f in "$@"; do echo $$ > "$f"; done; exec unshare --pid --mount --cgroup --uts --ipc --fork --mount-proc --propagation private sh -c "$0"`
	cmd := exec.Command("sh", append([]string{"-c", launch, strings.Join(script, "\n")}, rootProcs...)...)
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		if sd.pid > 0 {
			_ = syscall.Kill(sd.pid, syscall.SIGKILL) // its namespace's processes go with it
		}
		_ = cmd.Process.Kill()
		<-done
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if sd.pid == 0 {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
			sd.pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		if sd.pid > 0 {
			out, _ := exec.Command("nsenter", "-t", strconv.Itoa(sd.pid), "-m", "-p", "systemctl", "is-system-running").Output()
			if s := strings.TrimSpace(string(out)); s == "running" || s == "degraded" {
				return sd
			}
		}
		select {
		case <-done:
			t.Fatalf("the private systemd ended: %v\n%s", cmd.ProcessState, log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the private systemd is not running after 30s:\n%s", log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// run runs a command in the private systemd's namespaces (and, first, in a
// cgroup of its tree: a process can only move into cgroups of a cgroup
// namespace from inside it), with inPrivateSystemd set.
func (sd *privateSystemd) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	// Made now: at boot, systemd removes the empty cgroups it finds.
	var inner []string
	for _, r := range sd.roots {
		d := filepath.Join(r, "test")
		if err := os.Mkdir(d, 0o755); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
		copyCpuset(t, d)
		inner = append(inner, filepath.Join(d, "cgroup.procs"))
	}
	sh := `n=$1; shift; i=0; for f in "$@"; do i=$((i+1)); [ $i -le $n ] || break; echo $$ > "$f"; done; shift $n; exec nsenter -t ` +
		strconv.Itoa(sd.pid) + ` -m -p -C -u -i -- "$@"`
	full := append([]string{"-c", sh, "sh", strconv.Itoa(len(inner))}, inner...)
	cmd := exec.Command("sh", append(full, args...)...)
	cmd.Env = append(os.Environ(), inPrivateSystemd+"=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// cgroupMount is a cgroup hierarchy mounted under /sys/fs/cgroup.
type cgroupMount struct {
	point, fstype, options string
}

// cgroupMounts lists the host's cgroup mounts under /sys/fs/cgroup, the
// one at /sys/fs/cgroup itself (a v2 host's) first.
func cgroupMounts(t *testing.T) []cgroupMount {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []cgroupMount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		mp, pf := strings.Fields(pre)[4], strings.Fields(post)
		if len(pf) < 3 || (pf[0] != "cgroup" && pf[0] != "cgroup2") || !strings.HasPrefix(mp, "/sys/fs/cgroup") {
			continue
		}
		m := cgroupMount{point: mp, fstype: pf[0], options: pf[2]}
		if mp == "/sys/fs/cgroup" {
			out = append([]cgroupMount{m}, out...)
		} else {
			out = append(out, m)
		}
	}
	return out
}

// v1Controllers are the kernel's cgroup controllers (/proc/cgroups).
func v1Controllers(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("/proc/cgroups")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 0 && !strings.HasPrefix(f[0], "#") {
			out[f[0]] = true
		}
	}
	return out
}

// v1MountOptions are the options that mount the same v1 hierarchy again:
// its controllers and name, no release agent.
func v1MountOptions(super string, controllers map[string]bool) string {
	var opts []string
	hasController := false
	for _, o := range strings.Split(super, ",") {
		switch {
		case controllers[o]:
			hasController = true
			opts = append(opts, o)
		case strings.HasPrefix(o, "name="):
			opts = append(opts, o)
		}
	}
	if !hasController {
		opts = append([]string{"none"}, opts...)
	}
	return strings.Join(opts, ",")
}

// copyCpuset gives a new cpuset cgroup its parent's cpus and mems (it
// takes no process without).
func copyCpuset(t *testing.T, dir string) {
	t.Helper()
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f))
		if err != nil {
			continue // not a cpuset hierarchy
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0); err != nil {
			t.Fatal(err)
		}
	}
}
