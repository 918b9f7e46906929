package share

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/containerd/v2/core/mount"
	"golang.org/x/sys/unix"
)

// jailEnv makes the test binary the stand-in of a VMM's jail: a process in a
// mount namespace of its own whose root (pivot_root) is the directory named,
// with the guest root at /root (a shared mount), as cmd/boxlite-vmm makes it.
const jailEnv = "SHARE_TEST_JAIL"

func TestMain(m *testing.M) {
	if dir := os.Getenv(jailEnv); dir != "" {
		if err := jail(dir); err != nil {
			fmt.Fprintln(os.Stderr, "jail:", err)
			os.Exit(1)
		}
		fmt.Println("ready")
		_, _ = io.Copy(io.Discard, os.Stdin) // until the test closes it
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func jail(dir string) error {
	root := filepath.Join(dir, "root")
	for _, step := range []struct {
		src, dst string
		flags    uintptr
	}{
		{"", "/", unix.MS_REC | unix.MS_PRIVATE},
		{dir, dir, unix.MS_BIND},
		{root, root, unix.MS_BIND},
		{"", root, unix.MS_SHARED},
	} {
		if err := unix.Mount(step.src, step.dst, "", step.flags, ""); err != nil {
			return fmt.Errorf("mount %s on %s: %w", step.src, step.dst, err)
		}
	}
	if err := unix.Chdir(dir); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return err
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return err
	}
	return unix.Chdir("/")
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (mount namespaces, mounts): this test runs as uid", os.Geteuid())
	}
}

// testJail is a running jail stand-in.
type testJail struct {
	dir  string // the jail's root on the host
	pid  int
	ns   *Namespace
	view string // the jail's root as the host reaches it: /proc/<pid>/root
}

func newJail(t *testing.T) *testJail {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "root"), 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), jailEnv+"="+dir)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("jail stand-in did not start: %q %v", line, err)
	}
	ns, err := Open(cmd.Process.Pid, "/root")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return &testJail{dir: dir, pid: cmd.Process.Pid, ns: ns, view: fmt.Sprintf("/proc/%d/root", cmd.Process.Pid)}
}

// guest is path rel of the guest root as the jail sees it.
func (j *testJail) guest(rel string) string { return filepath.Join(j.view, "root", rel) }

// mountsOf lists the mount points (with their options) in pid's mount
// namespace, as pid's root shows them.
func mountsOf(t *testing.T, pid string) map[string]string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + pid + "/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		out[f[4]] = f[5]
	}
	return out
}

// assertHostUntouched fails if the host's mount namespace has a mount under
// any of dirs.
func assertHostUntouched(t *testing.T, dirs ...string) {
	t.Helper()
	for mp := range mountsOf(t, "self") {
		for _, d := range dirs {
			if mp == d || strings.HasPrefix(mp, d+"/") {
				t.Errorf("the host's mount namespace has a mount at %s", mp)
			}
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestBind(t *testing.T) {
	j := newJail(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), "from-host")
	file := filepath.Join(t.TempDir(), "single")
	writeFile(t, file, "one-file")
	for _, tc := range []struct {
		name, source, rel string
		opts              BindOptions
		wantRO            bool
	}{
		{"rw directory", src, "c/1/mounts/0-src", BindOptions{Recursive: true}, false},
		{"ro directory", src, "c/1/mounts/1-src", BindOptions{ReadOnly: true}, true},
		{"rro directory", src, "c/1/mounts/2-src", BindOptions{Recursive: true, RecursiveReadOnly: true}, true},
		{"ro file", file, "c/1/mounts/3-single", BindOptions{ReadOnly: true}, true},
		{"rw file", file, "c/2/mounts/0-single", BindOptions{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := j.ns.Bind(tc.source, tc.rel, tc.opts); err != nil {
				t.Fatal(err)
			}
			opts, ok := mountsOf(t, fmt.Sprint(j.pid))["/root/"+tc.rel]
			if !ok {
				t.Fatalf("no mount at /root/%s in the jail", tc.rel)
			}
			for _, want := range []string{"nosuid", "nodev"} {
				if !strings.Contains(opts, want) {
					t.Errorf("mount options %q lack %s", opts, want)
				}
			}
			if got := strings.HasPrefix(opts, "ro"); got != tc.wantRO {
				t.Errorf("mount options %q: read-only = %v, want %v", opts, got, tc.wantRO)
			}
			probe := j.guest(tc.rel)
			if st, _ := os.Stat(tc.source); st.IsDir() {
				probe = filepath.Join(probe, "f")
			}
			b, err := os.ReadFile(probe)
			if err != nil || !strings.HasPrefix(string(b), "from-host") && !strings.HasPrefix(string(b), "one-file") {
				t.Fatalf("reading through the share: %q %v", b, err)
			}
			err = os.WriteFile(probe, []byte("from-host, rewritten"), 0o644)
			if tc.wantRO && !errors.Is(err, unix.EROFS) {
				t.Errorf("writing through a read-only share: %v, want EROFS", err)
			}
			if !tc.wantRO && err != nil {
				t.Errorf("writing through a read-write share: %v", err)
			}
		})
	}
	assertHostUntouched(t, j.dir, src)
}

func TestBindRecursion(t *testing.T) {
	j := newJail(t)
	src := t.TempDir()
	sub := filepath.Join(src, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(sub, unix.MNT_DETACH) })
	writeFile(t, filepath.Join(sub, "in-submount"), "x")
	for _, tc := range []struct {
		rel        string
		opts       BindOptions
		wantSub    bool
		wantSubRO  bool
		wantTopRO  bool
		wantSubRec bool
	}{
		{"bind", BindOptions{}, false, false, false, false},
		{"rbind", BindOptions{Recursive: true}, true, false, false, true},
		{"rbind-ro", BindOptions{Recursive: true, ReadOnly: true}, true, false, true, true},
		{"rbind-rro", BindOptions{Recursive: true, RecursiveReadOnly: true}, true, true, true, true},
	} {
		t.Run(tc.rel, func(t *testing.T) {
			if err := j.ns.Bind(src, tc.rel, tc.opts); err != nil {
				t.Fatal(err)
			}
			_, err := os.Stat(filepath.Join(j.guest(tc.rel), "sub", "in-submount"))
			if got := err == nil; got != tc.wantSub {
				t.Fatalf("submount visible = %v, want %v (%v)", got, tc.wantSub, err)
			}
			if !tc.wantSub {
				return
			}
			m := mountsOf(t, fmt.Sprint(j.pid))
			if got := strings.HasPrefix(m["/root/"+tc.rel+"/sub"], "ro"); got != tc.wantSubRO {
				t.Errorf("submount read-only = %v, want %v (%s)", got, tc.wantSubRO, m["/root/"+tc.rel+"/sub"])
			}
			if got := strings.HasPrefix(m["/root/"+tc.rel], "ro"); got != tc.wantTopRO {
				t.Errorf("top mount read-only = %v, want %v", got, tc.wantTopRO)
			}
		})
	}
	// The host's own submount can go at once: no copy of it pins it in the
	// host's namespace.
	if err := unix.Unmount(sub, 0); err != nil {
		t.Fatalf("unmounting the source's submount: %v", err)
	}
	if err := os.Remove(sub); err != nil {
		t.Fatalf("removing the source's submount directory: %v", err)
	}
	assertHostUntouched(t, j.dir)
}

// TestPlantedLinks is the attack of the VM-boundary issue: the guest owns
// the guest root, so it can put a symbolic link (or a file) where the shim
// is about to make a mount point. Against the code before package share
// (filepath.Join + MkdirAll + mount in the host's namespace) the same links
// had the host directory mounted over; this test was seen failing there.
func TestPlantedLinks(t *testing.T) {
	j := newJail(t)
	canary := t.TempDir()
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "payload"), "guest-chosen")
	guestRoot := filepath.Join(j.dir, "root")
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T)
		rel   string
	}{
		{"absolute link for a parent", func(t *testing.T) {
			mustSymlink(t, canary, filepath.Join(guestRoot, "c1"))
		}, "c1/mounts/0-x"},
		{"relative link climbing out", func(t *testing.T) {
			mustSymlink(t, "../../../../../../../../.."+canary, filepath.Join(guestRoot, "c2"))
		}, "c2/rootfs"},
		{"link for the target itself", func(t *testing.T) {
			if err := os.MkdirAll(filepath.Join(guestRoot, "c3"), 0o755); err != nil {
				t.Fatal(err)
			}
			mustSymlink(t, canary, filepath.Join(guestRoot, "c3", "rootfs"))
		}, "c3/rootfs"},
		{"link into the jail's own tree", func(t *testing.T) {
			mustSymlink(t, "..", filepath.Join(guestRoot, "c4"))
		}, "c4/x"},
		{"file where a directory goes", func(t *testing.T) {
			writeFile(t, filepath.Join(guestRoot, "c5"), "")
		}, "c5/x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.plant(t)
			err := j.ns.Bind(src, tc.rel, BindOptions{})
			if err == nil {
				t.Fatalf("Bind through a planted link succeeded")
			}
			if !strings.Contains(err.Error(), "refusing to follow") && !errors.Is(err, unix.EEXIST) {
				t.Errorf("error does not say it refused the link: %v", err)
			}
		})
	}
	if ents, _ := os.ReadDir(canary); len(ents) != 0 {
		t.Errorf("the host directory the links pointed at was written: %v", ents)
	}
	for mp := range mountsOf(t, fmt.Sprint(j.pid)) {
		if mp != "/" && mp != "/root" {
			t.Errorf("the jail got a mount at %s", mp)
		}
	}
	assertHostUntouched(t, canary, j.dir)
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func TestRootfs(t *testing.T) {
	j := newJail(t)
	layer := t.TempDir()
	writeFile(t, filepath.Join(layer, "etc-release"), "image")
	staging := filepath.Join(t.TempDir(), "rootfs")
	mounts := []mount.Mount{{Type: "bind", Source: layer, Options: []string{"rbind", "rw"}}}
	if err := j.ns.Rootfs(mounts, staging, ".boxlite/containers/c1/rootfs"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(j.guest(".boxlite/containers/c1/rootfs/etc-release")); err != nil || string(b) != "image" {
		t.Fatalf("rootfs in the jail: %q %v", b, err)
	}
	assertHostUntouched(t, staging, j.dir)
	if err := j.ns.Rootfs(nil, staging, "x"); err == nil {
		t.Error("Rootfs without mounts succeeded")
	}
	bad := []mount.Mount{{Type: "bind", Source: filepath.Join(layer, "missing"), Options: []string{"rbind"}}}
	if err := j.ns.Rootfs(bad, staging, ".boxlite/containers/c2/rootfs"); err == nil {
		t.Error("Rootfs of a missing source succeeded")
	}
	assertHostUntouched(t, staging)
}

func TestRemove(t *testing.T) {
	j := newJail(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), "kept")
	for _, rel := range []string{"c/1/mounts/0-a", "c/1/mounts/1-b", "c/1/rootfs"} {
		if err := j.ns.Bind(src, rel, BindOptions{Recursive: true}); err != nil {
			t.Fatal(err)
		}
	}
	// Twice on one target: both mounts go.
	if err := j.ns.Bind(src, "c/1/rootfs/stacked", BindOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := j.ns.Remove("c/1"); err != nil {
		t.Fatal(err)
	}
	for mp := range mountsOf(t, fmt.Sprint(j.pid)) {
		if strings.HasPrefix(mp, "/root/c/1") {
			t.Errorf("still mounted in the jail after Remove: %s", mp)
		}
	}
	if _, err := os.Lstat(filepath.Join(j.dir, "root", "c", "1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("c/1 is still there: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(src, "f")); err != nil || string(b) != "kept" {
		t.Errorf("Remove reached the share's source: %q %v", b, err)
	}
	if err := j.ns.Remove("c/1"); err != nil {
		t.Errorf("Remove of what is gone: %v", err)
	}
	for _, rel := range []string{"", "/abs", "../up", "a/../../b", "."} {
		if err := j.ns.Remove(rel); err == nil {
			t.Errorf("Remove(%q) succeeded", rel)
		}
	}
}
