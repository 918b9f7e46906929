package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/boxlite/boxlite-shim/test/ctrd"
)

// The VM boundary, seen from the host: what a guest with root (or a
// compromised agent or VMM) can reach through the shim and the VMM. Each
// subtest is the attack; each was seen failing on the code before the fix
// (run there by hand).
func TestVMBoundary(t *testing.T) {
	s := newSuite(t)

	// The VMM is jailed: its root is the sandbox directory, not the host's
	// (before, /proc/<vmm>/root was the host's / and showed the deps
	// cache), in mount and PID namespaces of its own.
	t.Run("jailed-vmm", func(t *testing.T) {
		t.Cleanup(func() { s.assertClean(t) })
		id := "jail1"
		s.runDetached(t, id, "sleep", "1000")
		rec := s.record(t, id)
		root := fmt.Sprintf("/proc/%d/root", rec.VMMPid)
		for _, host := range []string{"usr", "etc", "var", strings.TrimPrefix(ctrd.Deps(), "/")} {
			if _, err := os.Lstat(filepath.Join(root, host)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the host's /%s is reachable from the VMM's root: %v", host, err)
			}
		}
		if _, err := os.Stat(filepath.Join(root, "root", ".boxlite", "boxlite-agent")); err != nil {
			t.Errorf("the guest root is not in the VMM's jail: %v", err)
		}
		for _, ns := range []string{"mnt", "pid"} {
			mine, _ := os.Readlink("/proc/self/ns/" + ns)
			its, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", rec.VMMPid, ns))
			if its == mine {
				t.Errorf("the VMM shares the host's %s namespace", ns)
			}
		}
		// The shim's listening socket (its inherited fd 3) does not leak
		// into the VMM: a VMM that outlived a crashed shim kept it
		// answering, so that containerd sent new containers to a dead shim.
		// (Before the fix this depended on when Go's collector finalized
		// containerd's os.File for fd 3; a run against the old code did not
		// catch it, the other checks of this subtest did fail there.)
		shimSock := listeningSocket(t, findShim(t, id))
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", rec.VMMPid))
		for _, fd := range fds {
			if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", rec.VMMPid, fd.Name())); l == shimSock {
				t.Errorf("the VMM holds the shim's listening socket %s as fd %s", shimSock, fd.Name())
			}
		}
		// Nothing of the container is mounted in the host's namespace.
		if m := ctrd.MountsUnder(rec.Dir); len(m) > 1 {
			t.Errorf("host mounts under the sandbox directory (only its tmpfs may be there): %v", m)
		}
		s.removeContainer(t, id)
	})

	// A read-only bind is read-only on the host side too: a guest kernel
	// that writes through virtio-fs (the VMM's view of the share) cannot
	// change the host file. Before, the host-side bind was read-write and
	// only the agent remounted it in the guest.
	t.Run("ro-bind-on-the-host-side", func(t *testing.T) {
		t.Cleanup(func() { s.assertClean(t) })
		src := t.TempDir()
		if err := os.WriteFile(filepath.Join(src, "f"), []byte("host"), 0o644); err != nil {
			t.Fatal(err)
		}
		id := "robind"
		s.runDetached(t, id, "--mount", "type=bind,src="+src+",dst=/data,options=rbind:ro", "sleep", "1000")
		rec := s.record(t, id)
		shared, err := filepath.Glob(fmt.Sprintf("/proc/%d/root/root/.boxlite/containers/%s/mounts/*", rec.VMMPid, id))
		if err != nil || len(shared) != 1 {
			t.Fatalf("the share in the VMM's view: %v %v", shared, err)
		}
		err = os.WriteFile(filepath.Join(shared[0], "f"), []byte("guest"), 0o644)
		if !errors.Is(err, unix.EROFS) {
			t.Errorf("writing through the VMM's view of a ro share: %v, want EROFS", err)
		}
		if b, _ := os.ReadFile(filepath.Join(src, "f")); string(b) != "host" {
			t.Errorf("the host file was changed through a ro share: %q", b)
		}
		s.removeContainer(t, id)
	})

	// The sandbox directory, which the guest writes, is a tmpfs of
	// vm.root_size_mib: a guest filling it gets ENOSPC, not the host's
	// memory. Before, it was a plain directory of state_dir (/run).
	t.Run("guest-root-is-bounded", func(t *testing.T) {
		t.Cleanup(func() { s.assertClean(t) })
		cfg := s.writeConfig(t, "small-root.toml", "[vm]\nroot_size_mib = 32\n")
		id := "fill"
		s.runDetached(t, id, "--runtime-config-path", cfg, "sleep", "1000")
		rec := s.record(t, id)
		var st unix.Statfs_t
		if err := unix.Statfs(rec.Dir, &st); err != nil || st.Type != unix.TMPFS_MAGIC || st.Blocks*uint64(st.Bsize) != 32<<20 {
			t.Fatalf("sandbox directory %s: statfs %+v %v: want a 32 MiB tmpfs", rec.Dir, st, err)
		}
		// What a guest would write into its root, through the VMM.
		fill := fmt.Sprintf("/proc/%d/root/root/fill", rec.VMMPid)
		f, err := os.Create(fill)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1<<20)
		var werr error
		for i := 0; i < 64 && werr == nil; i++ {
			_, werr = f.Write(buf)
		}
		f.Close()
		if !errors.Is(werr, unix.ENOSPC) {
			t.Errorf("writing 64 MiB into a 32 MiB guest root: %v, want ENOSPC", werr)
		}
		s.removeContainer(t, id)
	})

	// Without CNI (ctr run), the VMM gets a fresh, empty network namespace
	// as runc's container would: libkrun's TSI then reaches nothing of the
	// host. Before, the VMM ran in the shim's (the host's) namespace.
	t.Run("own-network-namespace", func(t *testing.T) {
		t.Cleanup(func() { s.assertClean(t) })
		id := "netns1"
		s.runDetached(t, id, "sleep", "1000")
		rec := s.record(t, id)
		mine, _ := os.Readlink("/proc/self/ns/net")
		its, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", rec.VMMPid))
		if err != nil || its == mine {
			t.Errorf("the VMM's network namespace %s is the host's (%s, %v)", its, mine, err)
		}
		s.removeContainer(t, id)
	})

	// The host's network namespace is refused with an error that says so,
	// by omission (--net-host) or by path (before: the first ran the VMM
	// in the host's namespace, the second failed by accident).
	t.Run("host-network-refused", func(t *testing.T) {
		t.Cleanup(func() { s.assertClean(t) })
		hostNS := fmt.Sprintf("/proc/%d/ns/net", os.Getpid())
		for _, tc := range []struct {
			name string
			args []string
		}{
			{"net-host", []string{"--net-host"}},
			{"host-path", []string{"--with-ns", "network:" + hostNS}},
		} {
			ctx := ctrd.CtxFor(t, 60*time.Second)
			out, err := s.d.Ctr(ctx, s.runArgs(append(append([]string{"--rm"}, tc.args...), s.img, "hn-"+tc.name, "true")...)...)
			if err == nil || !strings.Contains(out, "cannot share the host's network namespace") {
				t.Errorf("%s: %v: %s", tc.name, err, out)
			}
			s.removeContainer(t, "hn-"+tc.name)
		}
	})
}

// runDetached starts container id (ctr run -d, leading "--flag value"
// pairs passed to ctr) and waits until containerd reports its task running.
func (s *suite) runDetached(t *testing.T, id string, args ...string) {
	t.Helper()
	s.startDetached(t, id, args...)
	s.d.WaitRunning(t, ctrd.CtxFor(t, 60*time.Second), id)
}

// listeningSocket is the listening Unix socket of shim process pid, as
// /proc/PID/fd names it ("socket:[INODE]"): /proc/net/unix says which of its
// sockets listens (flag __SO_ACCEPTCON) at a path.
func listeningSocket(t *testing.T, pid int) string {
	t.Helper()
	mine := map[string]bool{}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); strings.HasPrefix(l, "socket:[") {
			mine[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	table, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(table), "\n") {
		// Num RefCount Protocol Flags Type St Inode Path
		if f := strings.Fields(line); len(f) == 8 && f[3] == "00010000" && mine[f[6]] {
			return "socket:[" + f[6] + "]"
		}
	}
	t.Fatalf("shim %d has no listening Unix socket", pid)
	return ""
}
