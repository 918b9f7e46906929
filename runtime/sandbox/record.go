package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"golang.org/x/sys/unix"

	"github.com/boxlite/boxlite-shim/runtime/podnet"
	"github.com/boxlite/boxlite-shim/runtime/vmm"
)

// RecordName is the sandbox's state record in the sandbox container's bundle.
const RecordName = "boxlite-sandbox.json"

// Record is what `shim delete` needs to clean up after a shim that is gone.
type Record struct {
	ID string `json:"id"`
	// Dir is the sandbox's directory (guest root and VMM state).
	Dir string `json:"dir"`
	// VMMPid is the VMM's PID, also its process group; 0 before boot.
	VMMPid int `json:"vmm_pid,omitempty"`
	// CgroupName is the agent's cgroup root under the guest's cgroup2 mount
	// (test double only); HostCgroup the same directory on the host.
	CgroupName string `json:"cgroup_name,omitempty"`
	HostCgroup string `json:"host_cgroup,omitempty"`
	// PodCgroups are the host cgroup directories the shim made for a pod's
	// VMM (its sandbox's cgroupsPath), deepest first.
	PodCgroups []string `json:"pod_cgroups,omitempty"`
	// Net is what was made in the pod's network namespace for the VM (the
	// TAP device, and once known the pod link it mirrors).
	Net *podnet.Attachment `json:"net,omitempty"`
}

func (s *Sandbox) recordPath() string { return filepath.Join(s.opts.Bundle, RecordName) }

func (s *Sandbox) writeRecord() error {
	if s.opts.Bundle == "" {
		return nil
	}
	b, err := json.Marshal(s.record)
	if err != nil {
		return err
	}
	tmp := s.recordPath() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("sandbox %s: state record: %w", s.ID, err)
	}
	if err := os.Rename(tmp, s.recordPath()); err != nil {
		return fmt.Errorf("sandbox %s: state record: %w", s.ID, err)
	}
	return nil
}

func (s *Sandbox) removeRecord() error {
	if s.opts.Bundle == "" {
		return nil
	}
	if err := os.Remove(s.recordPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Cleanup is `shim delete` for a sandbox whose shim is gone: it reads the
// state record in bundle, kills the VMM's process group, unmounts what is
// under the sandbox's directory, removes it, the host cgroup (test double)
// and the record. With no record it does nothing. It is safe to run twice.
func Cleanup(ctx context.Context, bundle string) error {
	path := filepath.Join(bundle, RecordName)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read sandbox state record: %w", err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("parse sandbox state record %s: %w", path, err)
	}
	var errs []error
	pids := vmm.Find(r.Dir) // also one the record missed (a crash while booting)
	if r.VMMPid > 0 {
		pids = append(pids, r.VMMPid)
	}
	for _, pid := range pids {
		if err := vmm.KillOrphan(ctx, pid); err != nil {
			errs = append(errs, err)
		}
	}
	if err := cleanupHost(r); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// cleanupHost undoes what the sandbox made on the host once its VMM is gone:
// it unmounts everything under the sandbox's directory, removes it, removes
// the host cgroups, and takes the TAP device and redirection out of the
// pod's network namespace.
func cleanupHost(r Record) error {
	var errs []error
	if r.Net != nil {
		if err := podnet.Detach(r.Net.NetNS, r.Net.PodLink); err != nil {
			errs = append(errs, err)
		}
	}
	if r.Dir != "" {
		if err := mount.UnmountRecursive(r.Dir, 0); err != nil && !errors.Is(err, os.ErrNotExist) {
			// A busy mount (a process still holding it) is detached.
			if err := mount.UnmountRecursive(r.Dir, unix.MNT_DETACH); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("unmount under %s: %w", r.Dir, err))
			}
		}
		if err := os.RemoveAll(r.Dir); err != nil {
			errs = append(errs, err)
		}
		// The namespace directory goes when it is empty.
		_ = os.Remove(filepath.Dir(r.Dir))
	}
	if r.HostCgroup != "" {
		if err := removeCgroup(r.HostCgroup); err != nil {
			errs = append(errs, err)
		}
	}
	for _, d := range r.PodCgroups {
		if err := removeCgroup(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeCgroup removes a cgroup v2 directory and its descendants, deepest
// first, waiting briefly for their last processes to be gone.
func removeCgroup(dir string) error {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	var last error
	for i := len(dirs) - 1; i >= 0; i-- {
		for try := 0; ; try++ {
			err := unix.Rmdir(dirs[i])
			if err == nil || errors.Is(err, unix.ENOENT) {
				break
			}
			if !errors.Is(err, unix.EBUSY) || try >= 100 {
				last = fmt.Errorf("remove cgroup %s: %w", dirs[i], err)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return last
}
