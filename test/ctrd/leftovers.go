package ctrd

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/boxlite/boxlite-shim/reaper"
	"github.com/boxlite/boxlite-shim/runtime/cgmount"
)

// OurBinaries are the executables whose processes must not outlive a test.
var OurBinaries = []string{"containerd-shim-boxlite-v2", "boxlite-vmm", "boxlite-agent"}

// Process is a process found by Leftovers.
type Process struct {
	Pid   int
	Exe   string
	State string
}

// OurProcesses lists live or zombie processes running one of OurBinaries.
func OurProcesses() []Process {
	ents, _ := os.ReadDir("/proc")
	var out []Process
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 >= len(s) {
			continue
		}
		comm := s[strings.IndexByte(s, '(')+1 : i]
		state := s[i+2 : i+3]
		exe, _ := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		for _, b := range OurBinaries {
			// comm is cut at 15 bytes; exe is gone for zombies. A VMM's
			// main thread is renamed by krun_start_enter ("libkrun VM":
			// runtime/vmm gives it no HOSTNAME), so a zombie VMM has that
			// comm.
			if filepath.Base(strings.TrimSuffix(exe, " (deleted)")) == b || strings.HasPrefix(b, comm) && len(comm) >= 11 ||
				b == "boxlite-vmm" && exe == "" && comm == "libkrun VM" {
				out = append(out, Process{Pid: pid, Exe: exe, State: state})
				break
			}
		}
	}
	return out
}

// AssertNoLeftovers fails the test if any process of ours, or any mount or
// socket under the given directories, remains. Processes get a short grace
// period to finish exiting.
func AssertNoLeftovers(t testing.TB, dirs ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		procs := OurProcesses()
		if len(procs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("processes of ours left running: %+v", procs)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, d := range dirs {
		if m := MountsUnder(d); len(m) > 0 {
			t.Errorf("mounts left under %s: %v", d, m)
		}
		_ = filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.Type()&os.ModeSocket != 0 {
				t.Errorf("socket left: %s", p)
			}
			return nil
		})
	}
}

// CgroupsLeft lists the cgroup v2 directories directly under the host's
// cgroup2 mount whose names start with prefix (the agent's per-sandbox
// cgroup roots under the libkrun test double).
func CgroupsLeft(prefix string) []string {
	root := Cgroup2Mount()
	if root == "" {
		return nil
	}
	ents, _ := os.ReadDir(root)
	var out []string
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), prefix) {
			out = append(out, filepath.Join(root, e.Name()))
		}
	}
	return out
}

// Cgroup2Mount is where the host mounts its cgroup v2 hierarchy ("" if not).
func Cgroup2Mount() string { return cgmount.Unified() }

// SuiteLeftovers lists what a whole test run left behind, for a TestMain to
// report after m.Run: processes of ours, mounts of containers' root
// filesystems in a sandbox's guest root (/.boxlite/containers/...) anywhere
// on the host, the test double's per-sandbox cgroups, and the suites'
// temporary directories (os.MkdirTemp("", prefix), with their sockets)
// under os.TempDir.
func SuiteLeftovers(tempPrefixes ...string) []string {
	var out []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		procs := OurProcesses()
		if len(procs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			out = append(out, fmt.Sprintf("processes: %+v", procs))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, m := range MountsUnder("/") {
		if strings.Contains(m, "/.boxlite/containers/") {
			out = append(out, "mount: "+m)
		}
	}
	for _, c := range CgroupsLeft("boxlite-") {
		out = append(out, "cgroup: "+c)
	}
	ents, _ := os.ReadDir(os.TempDir())
	for _, e := range ents {
		for _, p := range tempPrefixes {
			// os.MkdirTemp names: the prefix, then digits.
			if rest, ok := strings.CutPrefix(e.Name(), p); ok && rest != "" && strings.Trim(rest, "0123456789") == "" {
				out = append(out, "directory: "+filepath.Join(os.TempDir(), e.Name()))
			}
		}
	}
	return out
}

// LockSuites serializes the end-to-end suites (test/e2e, test/cri), which
// `go test ./...` runs as parallel processes: each one's leftover checks
// look at every shim, VMM and agent process on the host, so they must not
// see the other's. A suite's TestMain holds the lock for its whole run.
func LockSuites() (unlock func()) {
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "boxlite-e2e-suites.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return func() {}
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}
}

// RunSuite is a suite's TestMain body: it runs the tests holding the suites'
// lock, then, as root, fails the run (exit code 1) if leftovers() lists
// anything the suite left behind, printing it under the suite's name. What
// leftovers() already listed before the run (an earlier run killed on this
// host) is not this run's: it is named on stderr, and does not fail it.
func RunSuite(m *testing.M, name string, leftovers func() []string) int {
	unlock := LockSuites()
	defer unlock()
	var before []string
	if os.Geteuid() == 0 {
		before = leftovers()
		if len(before) > 0 {
			fmt.Fprintf(os.Stderr, "%s: found before the run (not counted against it):\n", name)
			for _, l := range before {
				fmt.Fprintln(os.Stderr, "  ", l)
			}
		}
	}
	code := m.Run()
	if os.Geteuid() != 0 {
		return code
	}
	if left := NewSince(before, leftovers()); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "%s: the suite left these behind:\n", name)
		for _, l := range left {
			fmt.Fprintln(os.Stderr, "  ", l)
		}
		if code == 0 {
			code = 1
		}
	}
	return code
}

// NewSince is what of after was not in before.
func NewSince(before, after []string) []string {
	had := make(map[string]bool, len(before))
	for _, b := range before {
		had[b] = true
	}
	var out []string
	for _, a := range after {
		if !had[a] {
			out = append(out, a)
		}
	}
	return out
}

// AgentOf is the guest agent in the VMM's process group pgid (under the
// libkrun test double, a host process), or 0.
func AgentOf(pgid int) int {
	for _, pid := range reaper.GroupMembers(pgid) {
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if filepath.Base(strings.TrimSuffix(exe, " (deleted)")) == "boxlite-agent" {
			return pid
		}
	}
	return 0
}

// PodMounts lists, for a TestMain's leftovers, the mounts anywhere on the
// host whose path contains /bxp (test/crid's directories) or one of marks
// (a suite's own temporary directories).
func PodMounts(marks ...string) []string {
	var out []string
	for _, m := range MountsUnder("/") {
		for _, mark := range append([]string{"/bxp"}, marks...) {
			if strings.Contains(m, mark) {
				out = append(out, "mount: "+m)
				break
			}
		}
	}
	return out
}

// PodDirs lists, for a TestMain's leftovers, test/crid's directories
// (/run/bxp*, $TMPDIR/bxp*) and then those matching globs: a line for each
// glob that matches.
func PodDirs(globs ...string) []string {
	var out []string
	for _, g := range append([]string{"/run/bxp*", filepath.Join(os.TempDir(), "bxp*")}, globs...) {
		if m, _ := filepath.Glob(g); len(m) > 0 {
			out = append(out, fmt.Sprint("directories: ", m))
		}
	}
	return out
}

// PodLeftovers lists what a whole run of a suite that runs CRI pods
// (test/crid) left behind, for its TestMain: PodMounts(marks...), the CRI
// pods' cgroups (boxlite-k8s.io-) and PodDirs(globs...). Unlike
// SuiteLeftovers it looks at no process: benchmarks may run shims beside
// these suites.
func PodLeftovers(marks, globs []string) []string {
	left := PodMounts(marks...)
	for _, c := range CgroupsLeft("boxlite-k8s.io-") {
		left = append(left, "cgroup: "+c)
	}
	return append(left, PodDirs(globs...)...)
}
