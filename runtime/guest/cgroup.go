package guest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/boxlite/boxlite-shim/runtime/guest/devfilter"
	"golang.org/x/sys/unix"

	"github.com/boxlite/boxlite-shim/runtime/agent/api"
)

// wantControllers are the cgroup v2 controllers the agent enables for
// containers, where the kernel has them.
var wantControllers = []string{"cpu", "cpuset", "memory", "pids", "io"}

// cgroups manages the containers' cgroup v2 leaves under one directory.
type cgroups struct {
	root        string
	err         error    // why there are no cgroups at all, or nil
	controllers []string // enabled for the leaves
	warnings    []string
}

func newCgroups(root string) *cgroups {
	cg := &cgroups{root: filepath.Clean(root)}
	parent := filepath.Dir(cg.root)
	if !isFS(parent, unix.CGROUP2_SUPER_MAGIC) {
		cg.err = fmt.Errorf("no cgroup v2 hierarchy at %s", parent)
		cg.warnings = append(cg.warnings, cg.err.Error()+": containers get no cgroup (no limits, stats, pause or OOM events)")
		return cg
	}
	if err := os.Mkdir(cg.root, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		cg.err = fmt.Errorf("create cgroup %s: %w", cg.root, err)
		cg.warnings = append(cg.warnings, cg.err.Error())
		return cg
	}
	have := readWords(filepath.Join(parent, "cgroup.controllers"))
	for _, c := range wantControllers {
		if !slices.Contains(have, c) {
			continue
		}
		if !slices.Contains(readWords(filepath.Join(parent, "cgroup.subtree_control")), c) {
			if err := os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte("+"+c), 0); err != nil {
				cg.warnings = append(cg.warnings, fmt.Sprintf("enable cgroup controller %s in %s: %v", c, parent, err))
				continue
			}
		}
		if err := os.WriteFile(filepath.Join(cg.root, "cgroup.subtree_control"), []byte("+"+c), 0); err != nil {
			cg.warnings = append(cg.warnings, fmt.Sprintf("enable cgroup controller %s in %s: %v", c, cg.root, err))
		}
	}
	cg.controllers = readWords(filepath.Join(cg.root, "cgroup.subtree_control"))
	for _, c := range []string{"memory", "cpu", "pids"} {
		if !slices.Contains(cg.controllers, c) {
			cg.warnings = append(cg.warnings, fmt.Sprintf("no cgroup v2 %s controller (%s has: %s)", c, parent, strings.Join(have, " ")))
		}
	}
	return cg
}

func (cg *cgroups) has(c string) bool { return slices.Contains(cg.controllers, c) }

// create makes the leaf for a container and applies the spec's limits. It
// returns the leaf ("" when the guest has no cgroups) and what it could not
// apply.
func (cg *cgroups) create(id string, res *specs.LinuxResources) (string, []string, error) {
	if cg.err != nil {
		w := []string{cg.err.Error() + ": resource limits not applied"}
		if res != nil && len(res.Devices) > 0 {
			w = append(w, cg.err.Error()+": device cgroup rules not enforced (the container sees only the device nodes it is given)")
		}
		return "", w, nil
	}
	dir := filepath.Join(cg.root, id)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", nil, fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	warnings, err := cg.apply(dir, res, false)
	if err == nil && res != nil && len(res.Devices) > 0 {
		// Compiled now, so that bad rules fail before the child starts;
		// attached by restrictDevices once its root filesystem is made.
		if _, err = devfilter.Compile(res.Devices); err != nil {
			err = fmt.Errorf("device rules of container %s: %w", id, err)
		}
	}
	if err != nil {
		cg.remove(dir)
		return "", nil, err
	}
	return dir, warnings, nil
}

// restrictDevices enforces the spec's device rules on the leaf dir: cgroup
// v2 has no devices files, the rules are an eBPF program attached to it.
// As runc: runc's default devices are appended to the spec's rules
// (devfilter.RuncDefaults), and the program is attached after the
// container's root filesystem is made, before its program runs.
func (cg *cgroups) restrictDevices(dir string, res *specs.LinuxResources) error {
	if dir == "" || res == nil || len(res.Devices) == 0 {
		return nil
	}
	rules := append(slices.Clone(res.Devices), devfilter.RuncDefaults...)
	prog, err := devfilter.Compile(rules)
	if err == nil {
		err = devfilter.Attach(dir, prog)
	}
	if err != nil {
		return fmt.Errorf("device rules: %w", err)
	}
	return nil
}

// remove deletes a leaf, waiting briefly for its last processes to be gone.
func (cg *cgroups) remove(dir string) error {
	if dir == "" {
		return nil
	}
	var err error
	for i := 0; i < 50; i++ {
		if err = unix.Rmdir(dir); err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("remove cgroup %s: %w", dir, err)
}

// apply writes the limits in res. With strict, a limit the guest cannot
// apply is an error; otherwise it is returned as a warning.
func (cg *cgroups) apply(dir string, res *specs.LinuxResources, strict bool) ([]string, error) {
	if res == nil {
		return nil, nil
	}
	var warnings []string
	write := func(controller, file, value string) error {
		if !cg.has(controller) {
			msg := fmt.Sprintf("cannot set %s=%s: no cgroup v2 %s controller in this guest", file, value, controller)
			if strict {
				return fmt.Errorf("%s: %w", msg, errdefs.ErrFailedPrecondition)
			}
			warnings = append(warnings, msg)
			return nil
		}
		if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0); err != nil {
			return fmt.Errorf("set %s=%s: %w", file, value, err)
		}
		return nil
	}
	max := func(v int64) string {
		if v < 0 {
			return "max"
		}
		return strconv.FormatInt(v, 10)
	}
	if m := res.Memory; m != nil {
		if m.Limit != nil && *m.Limit != 0 {
			if err := write("memory", "memory.max", max(*m.Limit)); err != nil {
				return nil, err
			}
		}
		if m.Reservation != nil && *m.Reservation != 0 {
			if err := write("memory", "memory.low", max(*m.Reservation)); err != nil {
				return nil, err
			}
		}
		if m.Swap != nil && *m.Swap != 0 {
			// OCI's swap is memory+swap; cgroup v2's memory.swap.max is swap alone.
			v := "max"
			if *m.Swap > 0 {
				if m.Limit == nil || *m.Limit <= 0 {
					return warnings, errors.New("memory swap limit without a memory limit")
				}
				v = strconv.FormatInt(*m.Swap-*m.Limit, 10)
			}
			if _, err := os.Stat(filepath.Join(dir, "memory.swap.max")); err == nil || !cg.has("memory") {
				if err := write("memory", "memory.swap.max", v); err != nil {
					return nil, err
				}
			} else {
				warnings = append(warnings, "cannot set memory.swap.max: the guest kernel has no swap accounting")
			}
		}
	}
	if c := res.CPU; c != nil {
		if c.Shares != nil && *c.Shares != 0 {
			// The conversion runc and crun use.
			w := 1 + ((*c.Shares-2)*9999)/262142
			if err := write("cpu", "cpu.weight", strconv.FormatUint(w, 10)); err != nil {
				return nil, err
			}
		}
		if (c.Quota != nil && *c.Quota != 0) || (c.Period != nil && *c.Period != 0) {
			period := uint64(100000)
			if c.Period != nil && *c.Period != 0 {
				period = *c.Period
			}
			quota := "max"
			if c.Quota != nil && *c.Quota > 0 {
				quota = strconv.FormatInt(*c.Quota, 10)
			}
			if err := write("cpu", "cpu.max", quota+" "+strconv.FormatUint(period, 10)); err != nil {
				return nil, err
			}
		}
		if c.Cpus != "" {
			if err := write("cpuset", "cpuset.cpus", c.Cpus); err != nil {
				return nil, err
			}
		}
		if c.Mems != "" {
			if err := write("cpuset", "cpuset.mems", c.Mems); err != nil {
				return nil, err
			}
		}
	}
	if p := res.Pids; p != nil && p.Limit != nil && *p.Limit != 0 {
		if err := write("pids", "pids.max", max(*p.Limit)); err != nil {
			return nil, err
		}
	}
	return warnings, nil
}

// freeze freezes (or thaws) a leaf and waits until the kernel says it is.
func freeze(dir string, frozen bool) error {
	v := "0"
	if frozen {
		v = "1"
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.freeze"), []byte(v), 0); err != nil {
		return fmt.Errorf("cgroup.freeze: %w", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ev, _ := readKV(filepath.Join(dir, "cgroup.events"))
		if got, ok := ev["frozen"]; ok && (got == 1) == frozen {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s did not become frozen=%s in 5s", dir, v)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// cgroupPids lists the PIDs in a leaf.
func cgroupPids(dir string) ([]int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids, nil
}

// stats reads a leaf's statistics. A part the guest cannot give is left out,
// with the reason in unavailable.
func (cg *cgroups) stats(dir string) *api.StatsResponse {
	r := &api.StatsResponse{Cgroup: dir}
	if dir == "" {
		r.Unavailable = append(r.Unavailable, "cgroup: "+errString(cg.err))
		return r
	}
	if kv, err := readKV(filepath.Join(dir, "cpu.stat")); err == nil {
		r.Cpu = &api.CPUStats{
			UsageUsec: kv["usage_usec"], UserUsec: kv["user_usec"], SystemUsec: kv["system_usec"],
			NrPeriods: kv["nr_periods"], NrThrottled: kv["nr_throttled"], ThrottledUsec: kv["throttled_usec"],
		}
	} else {
		r.Unavailable = append(r.Unavailable, "cpu: "+err.Error())
	}
	if cg.has("memory") {
		m := &api.MemoryStats{}
		m.Usage, _ = readUint(filepath.Join(dir, "memory.current"))
		m.Limit, _ = readUint(filepath.Join(dir, "memory.max"))
		m.SwapUsage, _ = readUint(filepath.Join(dir, "memory.swap.current"))
		m.SwapLimit, _ = readUint(filepath.Join(dir, "memory.swap.max"))
		m.MaxUsage, _ = readUint(filepath.Join(dir, "memory.peak"))
		m.Stat, _ = readKV(filepath.Join(dir, "memory.stat"))
		m.Events, _ = readKV(filepath.Join(dir, "memory.events"))
		r.Memory = m
	} else {
		r.Unavailable = append(r.Unavailable, "memory: no cgroup v2 memory controller in this guest"+cg.available())
	}
	if cg.has("pids") {
		p := &api.PidsStats{}
		p.Current, _ = readUint(filepath.Join(dir, "pids.current"))
		p.Limit, _ = readUint(filepath.Join(dir, "pids.max"))
		r.Pids = p
	} else {
		r.Unavailable = append(r.Unavailable, "pids: no cgroup v2 pids controller in this guest"+cg.available())
	}
	return r
}

func (cg *cgroups) available() string {
	have := readWords(filepath.Join(filepath.Dir(cg.root), "cgroup.controllers"))
	if len(have) == 0 {
		return " (it has none)"
	}
	return " (it has: " + strings.Join(have, " ") + ")"
}

// oomKills reads memory.events' oom_kill counter (0 without a memory controller).
func oomKills(dir string) uint64 {
	if dir == "" {
		return 0
	}
	kv, _ := readKV(filepath.Join(dir, "memory.events"))
	return kv["oom_kill"]
}

func errString(err error) string {
	if err == nil {
		return "none"
	}
	return err.Error()
}

func readWords(path string) []string {
	b, _ := os.ReadFile(path)
	return strings.Fields(string(b))
}

// readUint reads a one-number cgroup file; "max" reads as 0 (no limit).
func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

// readKV reads a flat keyed cgroup file ("key value" lines).
func readKV(path string) (map[string]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	kv := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			kv[k] = n
		}
	}
	return kv, sc.Err()
}

func parseResources(b []byte) (*specs.LinuxResources, error) {
	var res specs.LinuxResources
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("resources: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	return &res, nil
}
