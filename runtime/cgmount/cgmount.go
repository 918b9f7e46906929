// Package cgmount says where this host mounts its cgroup v2 (unified)
// hierarchy, for the shim's host cgroups and the tests that check them. It
// only reads the mount table: it makes and joins no cgroup.
package cgmount

import (
	"bufio"
	"os"
	"strings"
)

// Unified is the mount point of the host's cgroup v2 hierarchy
// (/sys/fs/cgroup on a v2 host, /sys/fs/cgroup/unified on a hybrid one), or
// "" when none is mounted.
func Unified() string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if _, post, ok := strings.Cut(line, " - "); ok && strings.HasPrefix(post, "cgroup2 ") {
			if f := strings.Fields(line); len(f) > 4 {
				return unescape(f[4])
			}
		}
	}
	return ""
}

// unescape undoes the mount table's octal escapes of spaces and the like.
func unescape(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}
