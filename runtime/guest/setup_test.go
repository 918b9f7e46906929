package guest

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestDecideRole(t *testing.T) {
	for _, tc := range []struct {
		mode      string
		pid, ppid int
		want      Role
	}{
		{"auto", 1, 0, RoleInit},
		{"auto", 2, 1, RoleInitChild}, // libkrun's init forked the agent
		{"auto", 57, 12, RolePlain},
		{"yes", 1, 0, RoleInit},
		{"yes", 57, 12, RoleInitChild},
		{"no", 1, 0, RolePlain},
		{"no", 2, 1, RolePlain},
	} {
		got, err := DecideRole(tc.mode, tc.pid, tc.ppid)
		if err != nil || got != tc.want {
			t.Errorf("DecideRole(%q, pid %d, ppid %d) = %v, %v; want %v", tc.mode, tc.pid, tc.ppid, got, err, tc.want)
		}
	}
	if _, err := DecideRole("maybe", 1, 0); err == nil || !strings.Contains(err.Error(), "want auto, yes or no") {
		t.Errorf("DecideRole(maybe): %v", err)
	}
}

// prepareReport is what the helper process found after Prepare.
type prepareReport struct {
	Warnings   []string
	TmpIsTmpfs bool
	RootShared bool
	Subreaper  int
	Err        string
}

const prepareHelperEnv = "BOXLITE_GUEST_PREPARE_HELPER"

// Prepare, as the workload of libkrun's init: the guest root is rshared,
// /dev, /proc, /sys and /sys/fs/cgroup are mounted, /tmp is an empty
// directory. The agent must make /tmp a tmpfs and / rslave, and become a
// child subreaper (it is not PID 1). As a plain process it must mount
// nothing. Each case runs in a helper process with a mount namespace of its
// own, chrooted into a guest root made like init.krun leaves it.
func TestPrepare(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (a mount namespace, mounts, chroot)")
	}
	for _, tc := range []struct {
		role       Role
		tmpfs      bool
		rootShared bool
		subreaper  int
	}{
		{RoleInitChild, true, false, 1},
		{RolePlain, false, true, 1},
	} {
		t.Run(tc.role.String(), func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestPrepareHelper$", "-test.count=1")
			cmd.Env = append(os.Environ(), prepareHelperEnv+"="+dir+":"+tc.role.String())
			cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("helper: %v\n%s%s", err, out, stderr.String())
			}
			var rep prepareReport
			line := out
			if i := bytes.Index(out, []byte("{")); i >= 0 {
				line = out[i:]
			}
			if err := json.NewDecoder(bytes.NewReader(line)).Decode(&rep); err != nil {
				t.Fatalf("helper said %q: %v", out, err)
			}
			if rep.Err != "" {
				t.Fatalf("helper: %s", rep.Err)
			}
			t.Logf("%+v", rep)
			if rep.TmpIsTmpfs != tc.tmpfs || rep.RootShared != tc.rootShared || rep.Subreaper != tc.subreaper {
				t.Errorf("after Prepare(%v): /tmp tmpfs %v, / shared %v, child subreaper %d; want %v, %v, %d",
					tc.role, rep.TmpIsTmpfs, rep.RootShared, rep.Subreaper, tc.tmpfs, tc.rootShared, tc.subreaper)
			}
			for _, w := range rep.Warnings {
				t.Errorf("warning: %s", w)
			}
		})
	}
}

// TestPrepareHelper is the helper process of TestPrepare; it does nothing
// in a normal run.
func TestPrepareHelper(t *testing.T) {
	spec := os.Getenv(prepareHelperEnv)
	if spec == "" {
		return
	}
	dir, roleName, _ := strings.Cut(spec, ":")
	var rep prepareReport
	defer func() { json.NewEncoder(os.Stdout).Encode(rep) }()
	fail := func(err error) { rep.Err = err.Error() }
	role := RolePlain
	if roleName == RoleInitChild.String() {
		role = RoleInitChild
	}
	root := filepath.Join(dir, "root")
	for _, d := range []string{"dev", "proc", "sys", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			fail(err)
			return
		}
	}
	// The guest as libkrun's init leaves it.
	type m struct{ src, dst, fstype string }
	steps := []func() error{
		func() error { return unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "") },
		func() error { return unix.Mount(root, root, "", unix.MS_BIND, "") },
	}
	for _, mm := range []m{{"devtmpfs", "dev", "devtmpfs"}, {"proc", "proc", "proc"}, {"sysfs", "sys", "sysfs"}, {"cgroup2", "sys/fs/cgroup", "cgroup2"}} {
		mm := mm
		steps = append(steps, func() error { return unix.Mount(mm.src, filepath.Join(root, mm.dst), mm.fstype, 0, "") })
	}
	steps = append(steps,
		func() error { return unix.Mount("", root, "", unix.MS_REC|unix.MS_SHARED, "") },
		func() error { return unix.Chroot(root) },
		func() error { return unix.Chdir("/") },
	)
	for _, step := range steps {
		if err := step(); err != nil {
			fail(err)
			return
		}
	}
	var err error
	if rep.Warnings, err = Prepare(role); err != nil {
		fail(err)
		return
	}
	rep.TmpIsTmpfs = isFS("/tmp", unix.TMPFS_MAGIC)
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		fail(err)
		return
	}
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 6 && f[4] == "/" {
			rep.RootShared = strings.Contains(l, " shared:")
		}
	}
	var v int32 // PR_GET_CHILD_SUBREAPER stores an int at arg2
	if err := unix.Prctl(unix.PR_GET_CHILD_SUBREAPER, uintptr(unsafe.Pointer(&v)), 0, 0, 0); err != nil {
		fail(err)
	}
	rep.Subreaper = int(v)
}
