package task

import (
	"testing"

	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/typeurl/v2"

	"github.com/boxlite/boxlite-shim/runtime/agent/api"
)

func TestMetrics(t *testing.T) {
	m := metrics(&api.StatsResponse{
		Cpu:  &api.CPUStats{UsageUsec: 10, UserUsec: 6, SystemUsec: 4},
		Pids: &api.PidsStats{Current: 2, Limit: 100},
		Memory: &api.MemoryStats{Usage: 4096, Limit: 8192, Stat: map[string]uint64{"anon": 1024, "file": 2048},
			Events: map[string]uint64{"oom": 1, "oom_kill": 1}},
		Unavailable: []string{"io: no controller"},
	})
	if m.CPU.UsageUsec != 10 || m.Pids.Current != 2 || m.Memory.Usage != 4096 || m.Memory.UsageLimit != 8192 ||
		m.Memory.Anon != 1024 || m.Memory.File != 2048 || m.MemoryEvents.OomKill != 1 {
		t.Errorf("metrics = %v", m)
	}
	// What the guest could not read stays absent, never zero.
	if m := metrics(&api.StatsResponse{Cpu: &api.CPUStats{UsageUsec: 1}}); m.Pids != nil || m.Memory != nil || m.MemoryEvents != nil {
		t.Errorf("missing parts filled in: %v", m)
	}
	// containerd (ctr task metrics, CRI) recognises the type.
	a, err := typeurl.MarshalAnyToProto(m)
	if err != nil {
		t.Fatal(err)
	}
	if !typeurl.Is(a, (*v2.Metrics)(nil)) {
		t.Errorf("type URL %s is not cgroups v2 Metrics", a.GetTypeUrl())
	}
}
