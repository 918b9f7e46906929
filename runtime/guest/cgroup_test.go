package guest

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"

	"github.com/boxlite/boxlite-shim/runtime/agent/api"
)

// leafFiles are the interface files of a cgroup v2 leaf with every controller
// the agent asks for; a test leaf starts with each of them empty.
var leafFiles = []string{
	"cgroup.procs", "cgroup.freeze", "cgroup.events",
	"memory.max", "memory.low", "memory.swap.max",
	"cpu.weight", "cpu.max", "cpuset.cpus", "cpuset.mems",
	"pids.max", "io.weight", "io.max",
}

// testLeaf makes a directory standing in for a container's cgroup leaf, with
// files as the kernel would show them, minus those in without (what a guest
// kernel may lack, such as memory.swap.max without swap accounting).
func testLeaf(t *testing.T, without ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range leafFiles {
		if slices.Contains(without, f) {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// leafValues reads every non-empty file of a leaf.
func leafValues(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 0 {
			got[e.Name()] = string(b)
		}
	}
	return got
}

func i64(v int64) *int64                 { return &v }
func u64(v uint64) *uint64               { return &v }
func u16(v uint16) *uint16               { return &v }
func mem(limit int64) *specs.LinuxMemory { return &specs.LinuxMemory{Limit: i64(limit)} }

var allControllers = []string{"cpu", "cpuset", "memory", "pids", "io"}

func TestCgroupApply(t *testing.T) {
	for _, tc := range []struct {
		name        string
		controllers []string // nil: all of them
		without     []string // leaf files the kernel does not have
		res         *specs.LinuxResources
		strict      bool
		want        map[string]string
		warn        []string // substrings, one per warning
		err         error    // errors.Is
		errText     string
	}{
		{name: "no resources", res: nil, want: map[string]string{}},
		{name: "nothing set", res: &specs.LinuxResources{}, want: map[string]string{}},
		{
			name: "memory limit",
			res:  &specs.LinuxResources{Memory: mem(256 << 20)},
			want: map[string]string{"memory.max": "268435456"},
		},
		{
			name: "no memory limit",
			res:  &specs.LinuxResources{Memory: mem(-1)},
			want: map[string]string{"memory.max": "max"},
		},
		{
			name: "a zero memory limit is no setting",
			res:  &specs.LinuxResources{Memory: mem(0)},
			want: map[string]string{},
		},
		{
			name: "memory reservation",
			res:  &specs.LinuxResources{Memory: &specs.LinuxMemory{Reservation: i64(64 << 20)}},
			want: map[string]string{"memory.low": "67108864"},
		},
		{
			name: "OCI swap is memory plus swap",
			res:  &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(256 << 20), Swap: i64(384 << 20)}},
			want: map[string]string{"memory.max": "268435456", "memory.swap.max": "134217728"},
		},
		{
			name: "unlimited swap",
			res:  &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(256 << 20), Swap: i64(-1)}},
			want: map[string]string{"memory.max": "268435456", "memory.swap.max": "max"},
		},
		{
			name:    "swap without a memory limit",
			res:     &specs.LinuxResources{Memory: &specs.LinuxMemory{Swap: i64(1 << 30)}},
			errText: "memory swap limit without a memory limit",
		},
		{
			name:    "no swap accounting in the guest kernel",
			without: []string{"memory.swap.max"},
			res:     &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(256 << 20), Swap: i64(384 << 20)}},
			want:    map[string]string{"memory.max": "268435456"},
			warn:    []string{"no swap accounting"},
		},
		{
			name: "CPU shares to weight, the default",
			res:  &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: u64(1024)}},
			want: map[string]string{"cpu.weight": "39"},
		},
		{
			name: "CPU shares to weight, the least",
			res:  &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: u64(2)}},
			want: map[string]string{"cpu.weight": "1"},
		},
		{
			name: "CPU shares to weight, the most",
			res:  &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: u64(262144)}},
			want: map[string]string{"cpu.weight": "10000"},
		},
		{
			name: "CPU quota and period",
			res:  &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(50000), Period: u64(200000)}},
			want: map[string]string{"cpu.max": "50000 200000"},
		},
		{
			name: "CPU quota, default period",
			res:  &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(150000)}},
			want: map[string]string{"cpu.max": "150000 100000"},
		},
		{
			name: "CPU period alone: no quota",
			res:  &specs.LinuxResources{CPU: &specs.LinuxCPU{Period: u64(250000)}},
			want: map[string]string{"cpu.max": "max 250000"},
		},
		{
			name: "unlimited CPU quota",
			res:  &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(-1), Period: u64(100000)}},
			want: map[string]string{"cpu.max": "max 100000"},
		},
		{
			name: "cpuset",
			res:  &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0-1,3", Mems: "0"}},
			want: map[string]string{"cpuset.cpus": "0-1,3", "cpuset.mems": "0"},
		},
		{
			name: "pids limit",
			res:  &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(100)}},
			want: map[string]string{"pids.max": "100"},
		},
		{
			name: "no pids limit",
			res:  &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(-1)}},
			want: map[string]string{"pids.max": "max"},
		},
		{
			// Block I/O is not applied (unenforced says so): nothing is
			// written, not even to io.weight.
			name: "block I/O weights are not applied",
			res: &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{
				Weight:       u16(500),
				WeightDevice: []specs.LinuxWeightDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 0}, Weight: u16(200)}},
			}},
			want: map[string]string{},
		},
		{
			name: "everything at once",
			res: &specs.LinuxResources{
				Memory: mem(128 << 20),
				CPU:    &specs.LinuxCPU{Shares: u64(512), Quota: i64(20000), Cpus: "0"},
				Pids:   &specs.LinuxPids{Limit: i64(32)},
			},
			want: map[string]string{
				"memory.max": "134217728", "cpu.weight": "20", "cpu.max": "20000 100000",
				"cpuset.cpus": "0", "pids.max": "32",
			},
		},
		{
			name:        "a missing controller is a warning at create",
			controllers: []string{"cpu", "pids"},
			res:         &specs.LinuxResources{Memory: mem(1 << 30), CPU: &specs.LinuxCPU{Cpus: "0"}, Pids: &specs.LinuxPids{Limit: i64(10)}},
			want:        map[string]string{"pids.max": "10"},
			warn:        []string{"memory.max=1073741824: no cgroup v2 memory controller", "cpuset.cpus=0: no cgroup v2 cpuset controller"},
		},
		{
			name:        "a missing controller is an error on update",
			controllers: []string{"cpu", "pids"},
			res:         &specs.LinuxResources{Memory: mem(1 << 30)},
			strict:      true,
			err:         errdefs.ErrFailedPrecondition,
		},
		{
			name:        "without a memory controller every memory setting is a warning",
			controllers: []string{"cpu"},
			without:     []string{"memory.swap.max"},
			res:         &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(256 << 20), Swap: i64(-1)}},
			want:        map[string]string{},
			warn:        []string{"cannot set memory.max", "cannot set memory.swap.max=max"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			controllers := tc.controllers
			if controllers == nil {
				controllers = allControllers
			}
			cg := &cgroups{root: t.TempDir(), controllers: controllers}
			dir := testLeaf(t, tc.without...)
			warnings, err := cg.apply(dir, tc.res, tc.strict)
			switch {
			case tc.err != nil || tc.errText != "":
				if err == nil {
					t.Fatalf("apply: no error; want %v%s", tc.err, tc.errText)
				}
				if tc.err != nil && !errors.Is(err, tc.err) {
					t.Errorf("apply: %v; want %v", err, tc.err)
				}
				if !strings.Contains(err.Error(), tc.errText) {
					t.Errorf("apply: %v; want it to say %q", err, tc.errText)
				}
				return
			case err != nil:
				t.Fatalf("apply: %v", err)
			}
			got := leafValues(t, dir)
			if len(got) != len(tc.want) {
				t.Errorf("files written: %v; want %v", got, tc.want)
			}
			for f, v := range tc.want {
				if got[f] != v {
					t.Errorf("%s = %q, want %q", f, got[f], v)
				}
			}
			if len(warnings) != len(tc.warn) {
				t.Fatalf("warnings %q; want %d saying %q", warnings, len(tc.warn), tc.warn)
			}
			for i, w := range tc.warn {
				if !strings.Contains(warnings[i], w) {
					t.Errorf("warning %d: %q; want it to say %q", i, warnings[i], w)
				}
			}
		})
	}
}

func TestCgroupCreate(t *testing.T) {
	t.Run("a leaf per container, limits applied", func(t *testing.T) {
		if os.Geteuid() != 0 {
			// create writes into a new directory: the files it makes have
			// mode 0, as cgroupfs files need none.
			t.Skip("reading the files create makes needs root")
		}
		cg := &cgroups{root: t.TempDir(), controllers: allControllers}
		dir, warnings, err := cg.create("c1", &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(7)}})
		if err != nil {
			t.Fatal(err)
		}
		if dir != filepath.Join(cg.root, "c1") || len(warnings) != 0 {
			t.Errorf("create = %q, %q; want %q, no warnings", dir, warnings, filepath.Join(cg.root, "c1"))
		}
		if got := leafValues(t, dir); got["pids.max"] != "7" {
			t.Errorf("leaf %v; want pids.max 7", got)
		}
		if _, _, err := cg.create("c1", nil); err == nil {
			t.Error("a second leaf of the same name: no error")
		}
	})
	t.Run("a failed limit leaves no leaf", func(t *testing.T) {
		cg := &cgroups{root: t.TempDir(), controllers: allControllers}
		_, _, err := cg.create("c1", &specs.LinuxResources{Memory: &specs.LinuxMemory{Swap: i64(1)}})
		if err == nil {
			t.Fatal("swap without a memory limit: no error")
		}
		if _, err := os.Stat(filepath.Join(cg.root, "c1")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("leaf after a failed create: %v; want it gone", err)
		}
	})
	t.Run("no cgroups in the guest", func(t *testing.T) {
		cg := &cgroups{root: t.TempDir(), err: errors.New("no cgroup v2 hierarchy at /x")}
		dir, warnings, err := cg.create("c1", &specs.LinuxResources{Memory: mem(1 << 20)})
		if err != nil || dir != "" {
			t.Fatalf("create = %q, %v; want no leaf, no error", dir, err)
		}
		if len(warnings) != 1 || !strings.Contains(warnings[0], "resource limits not applied") {
			t.Errorf("warnings %q; want one saying the limits are not applied", warnings)
		}
	})
}

func TestCgroupStats(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"cpu.stat":       "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 4\nnr_throttled 1\nthrottled_usec 20\n",
		"memory.current": "4096\n",
		"memory.max":     "max\n",
		"memory.peak":    "8192\n",
		"memory.stat":    "anon 1024\nfile 2048\n",
		"memory.events":  "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n",
		"pids.current":   "3\n",
		"pids.max":       "64\n",
	}
	for f, v := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cg := &cgroups{root: t.TempDir(), controllers: allControllers}
	r := cg.stats(dir)
	want := &api.StatsResponse{
		Cgroup: dir,
		Cpu:    &api.CPUStats{UsageUsec: 1500, UserUsec: 1000, SystemUsec: 500, NrPeriods: 4, NrThrottled: 1, ThrottledUsec: 20},
		Memory: &api.MemoryStats{Usage: 4096, MaxUsage: 8192,
			Stat:   map[string]uint64{"anon": 1024, "file": 2048},
			Events: map[string]uint64{"low": 0, "high": 0, "max": 2, "oom": 1, "oom_kill": 1}},
		Pids: &api.PidsStats{Current: 3, Limit: 64},
	}
	if !proto.Equal(r, want) {
		t.Errorf("stats\n%v\nwant\n%v", r, want)
	}
	if n := oomKills(dir); n != 1 {
		t.Errorf("oomKills = %d, want 1", n)
	}

	t.Run("without controllers", func(t *testing.T) {
		cg := &cgroups{root: t.TempDir(), controllers: []string{"cpu"}}
		r := cg.stats(t.TempDir())
		if r.Memory != nil || r.Pids != nil || len(r.Unavailable) != 3 {
			t.Errorf("memory %v, pids %v, unavailable %q; want none, none, and why for cpu, memory and pids", r.Memory, r.Pids, r.Unavailable)
		}
	})
	t.Run("no cgroup", func(t *testing.T) {
		cg := &cgroups{err: errors.New("no cgroup v2 hierarchy")}
		r := cg.stats("")
		if len(r.Unavailable) != 1 || !strings.Contains(r.Unavailable[0], "no cgroup v2 hierarchy") {
			t.Errorf("unavailable %q; want the reason there is no cgroup", r.Unavailable)
		}
	})
}

func TestCgroupFreeze(t *testing.T) {
	for _, frozen := range []bool{true, false} {
		dir := testLeaf(t)
		events := "populated 1\nfrozen 0\n"
		want := "0"
		if frozen {
			events, want = "populated 1\nfrozen 1\n", "1"
		}
		// The stand-in kernel has already done it: freeze must see that.
		if err := os.WriteFile(filepath.Join(dir, "cgroup.events"), []byte(events), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := freeze(dir, frozen); err != nil {
			t.Fatalf("freeze(%v): %v", frozen, err)
		}
		if got := leafValues(t, dir)["cgroup.freeze"]; got != want {
			t.Errorf("freeze(%v): cgroup.freeze = %q, want %q", frozen, got, want)
		}
	}
}

func TestCgroupPids(t *testing.T) {
	dir := testLeaf(t)
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte("12\n345\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pids, err := cgroupPids(dir)
	if err != nil || !slices.Equal(pids, []int{12, 345}) {
		t.Errorf("cgroupPids = %v, %v; want [12 345]", pids, err)
	}
}

func TestUnenforced(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec specs.Spec
		want []string
	}{
		{name: "nothing to say", spec: specs.Spec{Process: &specs.Process{}, Linux: &specs.Linux{Resources: &specs.LinuxResources{Memory: mem(1)}}}},
		{
			name: "block I/O",
			spec: specs.Spec{Process: &specs.Process{}, Linux: &specs.Linux{Resources: &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{Weight: u16(10)}}}},
			want: []string{"blkio"},
		},
		{
			// A seccomp profile is applied (package seccomp), device rules
			// are enforced (package devfilter): neither is listed.
			name: "AppArmor, SELinux",
			spec: specs.Spec{
				Process: &specs.Process{ApparmorProfile: "p", SelinuxLabel: "l"},
				Linux: &specs.Linux{Seccomp: &specs.LinuxSeccomp{}, Resources: &specs.LinuxResources{
					Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
				}},
			},
			want: []string{"AppArmor", "SELinux"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := unenforced(&tc.spec)
			if len(got) != len(tc.want) {
				t.Fatalf("unenforced = %q; want %d saying %q", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %d: %q; want it to say %q", i, got[i], w)
				}
			}
		})
	}
}

func TestRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec specs.Spec
		want string // "" = accepted
	}{
		{name: "plain", spec: specs.Spec{Mounts: []specs.Mount{{Destination: "/v", Type: "bind", Source: "/s", Options: []string{"rbind", "rslave"}}}}},
		{name: "empty hooks", spec: specs.Spec{Hooks: &specs.Hooks{}}},
		{name: "prestart hook", spec: specs.Spec{Hooks: &specs.Hooks{Prestart: []specs.Hook{{Path: "/usr/bin/nvidia-hook"}}}}, want: "OCI hooks are not supported in a micro-VM: the spec has prestart (/usr/bin/nvidia-hook)"},
		{name: "poststop hook", spec: specs.Spec{Hooks: &specs.Hooks{Poststop: []specs.Hook{{Path: "/bin/true"}}}}, want: "poststop (/bin/true)"},
		{name: "bidirectional", spec: specs.Spec{Mounts: []specs.Mount{{Destination: "/v", Type: "bind", Source: "/s", Options: []string{"rbind", "rshared"}}}}, want: "mount /v: Bidirectional mount propagation (rshared) is not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := refused(&tc.spec)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errdefs.IsNotImplemented(err)):
				t.Fatalf("refused: %v; want a not-implemented error saying %q", err, tc.want)
			}
		})
	}
}
