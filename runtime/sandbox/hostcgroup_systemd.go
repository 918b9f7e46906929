package sandbox

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/containerd/cgroups/v3"
	sdbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// With systemd's cgroup driver (kubeadm's default) a sandbox's cgroupsPath
// is "slice:prefix:name": runc then asks systemd, over D-Bus, for a
// transient scope unit "prefix-name.scope" in that slice holding the pause
// process, and joins by path the v1 controllers systemd does not manage
// (cpuset, freezer...). The shim does the same for the VMM.

// scopeStartTimeout bounds the wait for systemd to start the scope (runc's).
const scopeStartTimeout = 30 * time.Second

// systemdCgroup is a cgroupsPath in systemd's form.
type systemdCgroup struct {
	// slice is the parent slice unit, unit the scope to make.
	slice, unit string
	// dir is the scope's cgroup, as systemd lays it out under each
	// hierarchy: /a.slice/a-b.slice/prefix-name.scope.
	dir string
}

// parseSystemdCgroupsPath reads "slice:prefix:name" as runc does: an empty
// slice is system.slice, the unit is prefix-name.scope (name.scope with no
// prefix). A slice for the sandbox itself (name ending in .slice) is
// refused: the VMM needs a scope, which holds processes.
func parseSystemdCgroupsPath(p string) (systemdCgroup, error) {
	parts := strings.Split(p, ":")
	if len(parts) != 3 {
		return systemdCgroup{}, fmt.Errorf("cgroupsPath %q: systemd's form is slice:prefix:name", p)
	}
	slice, prefix, name := parts[0], parts[1], parts[2]
	if slice == "" {
		slice = "system.slice"
	}
	if name == "" || strings.Contains(name, "/") || strings.HasSuffix(name, ".slice") {
		return systemdCgroup{}, fmt.Errorf("cgroupsPath %q: the name must be a scope's, not empty, a path or a slice", p)
	}
	dir, err := expandSlice(slice)
	if err != nil {
		return systemdCgroup{}, fmt.Errorf("cgroupsPath %q: %w", p, err)
	}
	unit := name + ".scope"
	if prefix != "" {
		unit = prefix + "-" + unit
	}
	return systemdCgroup{slice: slice, unit: unit, dir: path.Join(dir, unit)}, nil
}

// expandSlice is the cgroup directory of a systemd slice: each dash starts
// a level ("a-b.slice" is /a.slice/a-b.slice; "-.slice" is the root).
func expandSlice(slice string) (string, error) {
	const suffix = ".slice"
	if len(slice) <= len(suffix) || !strings.HasSuffix(slice, suffix) || strings.Contains(slice, "/") {
		return "", fmt.Errorf("invalid slice name %q", slice)
	}
	name := strings.TrimSuffix(slice, suffix)
	if name == "-" {
		return "/", nil
	}
	dir, prefix := "", ""
	for _, c := range strings.Split(name, "-") {
		if c == "" {
			return "", fmt.Errorf("invalid slice name %q", slice)
		}
		dir += "/" + prefix + c + suffix
		prefix += c + "-"
	}
	return dir, nil
}

// scopeProperties are the properties of the transient scope, as runc sets
// them for a container's: the slice, the processes, delegation (what is
// below the scope is the VMM's owner's, not systemd's), accounting, and no
// default dependencies (the scope must not wait for, or stop with, the
// boot's units). No limits: the VM's size bounds the VMM, and the pod's
// limits are the slice's. mode chooses between the v2 and v1 names of the
// block I/O accounting property.
func scopeProperties(sc systemdCgroup, pids []int, mode cgroups.CGMode) []sdbus.Property {
	up := make([]uint32, len(pids))
	for i, p := range pids {
		up[i] = uint32(p)
	}
	io := "BlockIOAccounting"
	if mode == cgroups.Unified {
		io = "IOAccounting"
	}
	return []sdbus.Property{
		sdbus.PropDescription("boxlite sandbox VMM " + sc.unit),
		sdbus.PropSlice(sc.slice),
		sdbus.PropPids(up...),
		{Name: "Delegate", Value: dbus.MakeVariant(true)},
		{Name: "DefaultDependencies", Value: dbus.MakeVariant(false)},
		{Name: "MemoryAccounting", Value: dbus.MakeVariant(true)},
		{Name: "CPUAccounting", Value: dbus.MakeVariant(true)},
		{Name: "TasksAccounting", Value: dbus.MakeVariant(true)},
		{Name: io, Value: dbus.MakeVariant(true)},
	}
}

// systemdConnect connects to systemd's manager: the system bus, or as root
// systemd's private socket when there is no bus daemon.
var systemdConnect = sdbus.NewWithContext

// startScope asks systemd for sc's scope holding pids, and waits until
// systemd has started it. A failed unit of the same name left behind (a
// sandbox that was retried) is reset once, as runc does.
func startScope(sc systemdCgroup, pids []int) error {
	ctx, cancel := context.WithTimeout(context.Background(), scopeStartTimeout)
	defer cancel()
	conn, err := systemdConnect(ctx)
	if err != nil {
		return fmt.Errorf("connecting to systemd over D-Bus (for the systemd cgroup driver): %w", err)
	}
	defer conn.Close()
	props := scopeProperties(sc, pids, cgroups.Mode())
	for retried := false; ; retried = true {
		done := make(chan string, 1)
		_, err := conn.StartTransientUnitContext(ctx, sc.unit, "replace", props, done)
		var derr dbus.Error
		if err != nil && !retried && errors.As(err, &derr) && derr.Name == "org.freedesktop.systemd1.UnitExists" {
			_ = conn.ResetFailedUnitContext(ctx, sc.unit)
			continue
		}
		if err != nil {
			return fmt.Errorf("systemd: starting transient unit %s in %s: %w", sc.unit, sc.slice, err)
		}
		select {
		case res := <-done:
			if res != "done" {
				_ = conn.ResetFailedUnitContext(ctx, sc.unit)
				return fmt.Errorf("systemd: starting transient unit %s in %s: job %s", sc.unit, sc.slice, res)
			}
			return nil
		case <-ctx.Done():
			return fmt.Errorf("systemd: starting transient unit %s in %s: no answer within %v", sc.unit, sc.slice, scopeStartTimeout)
		}
	}
}
