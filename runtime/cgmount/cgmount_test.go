package cgmount

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func TestUnified(t *testing.T) {
	got := Unified()
	if got == "" {
		t.Skip("this host mounts no cgroup v2 hierarchy")
	}
	var st unix.Statfs_t
	if err := unix.Statfs(got, &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		t.Errorf("Unified() = %s: statfs %v, type %#x; want a cgroup2 mount", got, err, st.Type)
	}
	if _, err := os.Stat(got + "/cgroup.procs"); err != nil {
		t.Errorf("%s/cgroup.procs: %v", got, err)
	}
}

func TestUnescape(t *testing.T) {
	if got := unescape(`/a\040b\134c`); got != `/a b\c` {
		t.Errorf("unescape = %q", got)
	}
}
