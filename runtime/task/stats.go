package task

import (
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"

	"github.com/boxlite/boxlite-shim/runtime/agent/api"
)

// metrics turns the agent's guest cgroup v2 statistics into the cgroups v2
// Metrics containerd (ctr task metrics, CRI) decodes. Parts the guest could
// not read stay nil, never zero.
func metrics(r *api.StatsResponse) *v2.Metrics {
	m := &v2.Metrics{}
	if c := r.GetCpu(); c != nil {
		m.CPU = &v2.CPUStat{
			UsageUsec:     c.UsageUsec,
			UserUsec:      c.UserUsec,
			SystemUsec:    c.SystemUsec,
			NrPeriods:     c.NrPeriods,
			NrThrottled:   c.NrThrottled,
			ThrottledUsec: c.ThrottledUsec,
		}
	}
	if p := r.GetPids(); p != nil {
		m.Pids = &v2.PidsStat{Current: p.Current, Limit: p.Limit}
	}
	if mem := r.GetMemory(); mem != nil {
		s := mem.Stat
		m.Memory = &v2.MemoryStat{
			Anon:                  s["anon"],
			File:                  s["file"],
			KernelStack:           s["kernel_stack"],
			Slab:                  s["slab"],
			Sock:                  s["sock"],
			Shmem:                 s["shmem"],
			FileMapped:            s["file_mapped"],
			FileDirty:             s["file_dirty"],
			FileWriteback:         s["file_writeback"],
			AnonThp:               s["anon_thp"],
			InactiveAnon:          s["inactive_anon"],
			ActiveAnon:            s["active_anon"],
			InactiveFile:          s["inactive_file"],
			ActiveFile:            s["active_file"],
			Unevictable:           s["unevictable"],
			SlabReclaimable:       s["slab_reclaimable"],
			SlabUnreclaimable:     s["slab_unreclaimable"],
			Pgfault:               s["pgfault"],
			Pgmajfault:            s["pgmajfault"],
			WorkingsetRefault:     s["workingset_refault"],
			WorkingsetActivate:    s["workingset_activate"],
			WorkingsetNodereclaim: s["workingset_nodereclaim"],
			Pgrefill:              s["pgrefill"],
			Pgscan:                s["pgscan"],
			Pgsteal:               s["pgsteal"],
			Pgactivate:            s["pgactivate"],
			Pgdeactivate:          s["pgdeactivate"],
			Pglazyfree:            s["pglazyfree"],
			Pglazyfreed:           s["pglazyfreed"],
			ThpFaultAlloc:         s["thp_fault_alloc"],
			ThpCollapseAlloc:      s["thp_collapse_alloc"],
			Usage:                 mem.Usage,
			UsageLimit:            mem.Limit,
			SwapUsage:             mem.SwapUsage,
			SwapLimit:             mem.SwapLimit,
			MaxUsage:              mem.MaxUsage,
		}
		if e := mem.Events; e != nil {
			m.MemoryEvents = &v2.MemoryEvents{
				Low:          e["low"],
				High:         e["high"],
				Max:          e["max"],
				Oom:          e["oom"],
				OomKill:      e["oom_kill"],
				OomGroupKill: e["oom_group_kill"],
			}
		}
	}
	return m
}
