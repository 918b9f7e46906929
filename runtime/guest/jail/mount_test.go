package jail

import (
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseMountOptions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		options []string
		flags   uintptr
		prop    []uintptr
		data    string
	}{
		{name: "none"},
		{
			name:    "the usual hardening",
			options: []string{"ro", "nosuid", "nodev", "noexec"},
			flags:   unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC,
		},
		{
			name:    "CRI's /dev tmpfs",
			options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"},
			flags:   unix.MS_NOSUID | unix.MS_STRICTATIME,
			data:    "mode=755,size=65536k",
		},
		{
			name:    "CRI's devpts",
			options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"},
			flags:   unix.MS_NOSUID | unix.MS_NOEXEC,
			data:    "newinstance,ptmxmode=0666,mode=0620,gid=5",
		},
		{
			name:    "rbind with rprivate",
			options: []string{"rbind", "rprivate"},
			flags:   unix.MS_BIND | unix.MS_REC,
			prop:    []uintptr{unix.MS_REC | unix.MS_PRIVATE},
		},
		{
			name:    "read-only bind, shared",
			options: []string{"bind", "ro", "rshared"},
			flags:   unix.MS_BIND | unix.MS_RDONLY,
			prop:    []uintptr{unix.MS_REC | unix.MS_SHARED},
		},
		{
			name:    "every propagation, in order",
			options: []string{"rslave", "slave", "private", "shared", "unbindable", "runbindable"},
			prop: []uintptr{
				unix.MS_REC | unix.MS_SLAVE, unix.MS_SLAVE, unix.MS_PRIVATE, unix.MS_SHARED,
				unix.MS_UNBINDABLE, unix.MS_REC | unix.MS_UNBINDABLE,
			},
		},
		{
			name:    "remount read-only",
			options: []string{"remount", "ro"},
			flags:   unix.MS_REMOUNT | unix.MS_RDONLY,
		},
		{
			name:    "a later option clears an earlier one",
			options: []string{"ro", "noexec", "nosuid", "rw", "exec"},
			flags:   unix.MS_NOSUID,
		},
		{
			name:    "clearing what was never set",
			options: []string{"rw", "suid", "dev", "exec", "async", "atime", "diratime", "norelatime", "nostrictatime", "nomand"},
		},
		{
			name:    "atime and sync flags",
			options: []string{"noatime", "nodiratime", "relatime", "sync", "dirsync", "mand"},
			flags:   unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME | unix.MS_SYNCHRONOUS | unix.MS_DIRSYNC | unix.MS_MANDLOCK,
		},
		{
			name:    "options that do not apply here are dropped",
			options: []string{"tmpcopyup", "idmap", "ridmap", "x-mount.mkdir", "size=1m"},
			data:    "size=1m",
		},
		{
			name:    "what is not a flag goes to the filesystem, in order",
			options: []string{"uid=1000", "nodev", "gid=1000", "mode=1777"},
			flags:   unix.MS_NODEV,
			data:    "uid=1000,gid=1000,mode=1777",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			flags, prop, data := parseMountOptions(tc.options)
			if flags != tc.flags {
				t.Errorf("flags = %#x, want %#x", flags, tc.flags)
			}
			if !slices.Equal(prop, tc.prop) {
				t.Errorf("propagation = %#x, want %#x", prop, tc.prop)
			}
			if data != tc.data {
				t.Errorf("data = %q, want %q", data, tc.data)
			}
		})
	}
}
