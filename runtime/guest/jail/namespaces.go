package jail

import (
	"fmt"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// joinNamespaces enters existing namespaces on this (locked) thread. The
// mount namespace goes last, after unsharing the filesystem attributes the
// Go runtime's threads share.
func joinNamespaces(join []Namespace) error {
	type opened struct {
		fd   int
		flag int
		typ  string
	}
	var fds []opened
	var mnt *opened
	defer func() {
		for _, o := range fds {
			unix.Close(o.fd)
		}
	}()
	for _, j := range join {
		flag, ok := nsFlags[specs.LinuxNamespaceType(j.Type)]
		if !ok || j.Type == string(specs.UserNamespace) {
			return fmt.Errorf("joining a %s namespace is not supported", j.Type)
		}
		fd, err := unix.Open(j.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s namespace %s: %w", j.Type, j.Path, err)
		}
		fds = append(fds, opened{fd, flag, j.Type})
	}
	for i := range fds {
		if fds[i].flag == unix.CLONE_NEWNS {
			mnt = &fds[i]
			continue
		}
		if err := unix.Setns(fds[i].fd, fds[i].flag); err != nil {
			return fmt.Errorf("join %s namespace: %w", fds[i].typ, err)
		}
	}
	if mnt != nil {
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			return fmt.Errorf("unshare fs attributes: %w", err)
		}
		if err := unix.Setns(mnt.fd, unix.CLONE_NEWNS); err != nil {
			return fmt.Errorf("join mount namespace: %w", err)
		}
	}
	return nil
}

// CloneFlag is the clone(2) flag that makes a namespace of type t.
func CloneFlag(t specs.LinuxNamespaceType) (int, bool) {
	f, ok := nsFlags[t]
	return f, ok
}

var nsFlags = map[specs.LinuxNamespaceType]int{
	specs.PIDNamespace:     unix.CLONE_NEWPID,
	specs.NetworkNamespace: unix.CLONE_NEWNET,
	specs.MountNamespace:   unix.CLONE_NEWNS,
	specs.IPCNamespace:     unix.CLONE_NEWIPC,
	specs.UTSNamespace:     unix.CLONE_NEWUTS,
	specs.CgroupNamespace:  unix.CLONE_NEWCGROUP,
	specs.UserNamespace:    unix.CLONE_NEWUSER,
	specs.TimeNamespace:    unix.CLONE_NEWTIME,
}
