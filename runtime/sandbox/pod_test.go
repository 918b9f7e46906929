package sandbox

import (
	"testing"

	"github.com/boxlite/boxlite-shim/config"
)

func TestPodResources(t *testing.T) {
	cfg := config.Default() // cpus 1, memory 512, max 8 / 8192, overhead 64
	base := config.Resources{CPUs: cfg.VM.CPUs, MemoryMiB: cfg.VM.MemoryMiB}
	for _, tc := range []struct {
		name string
		ann  map[string]string
		want config.Resources
	}{
		{"no limits", map[string]string{}, base},
		{"cpu rounded up", map[string]string{AnnotationSandboxCPUQuota: "150000", AnnotationSandboxCPUPeriod: "100000"}, config.Resources{CPUs: 2, MemoryMiB: 512}},
		{"memory plus overhead", map[string]string{AnnotationSandboxMemory: "268435456"}, config.Resources{CPUs: 1, MemoryMiB: 256 + 64}},
		{"partial MiB rounded up", map[string]string{AnnotationSandboxMemory: "1048577"}, config.Resources{CPUs: 1, MemoryMiB: config.MinMemoryMiB}},
		{"bounded by max", map[string]string{AnnotationSandboxCPUQuota: "10000000", AnnotationSandboxCPUPeriod: "100000", AnnotationSandboxMemory: "1099511627776"}, config.Resources{CPUs: 8, MemoryMiB: 8192}},
		{"no quota (-1)", map[string]string{AnnotationSandboxCPUQuota: "-1", AnnotationSandboxCPUPeriod: "100000"}, base},
		{"io.boxlite.* wins", map[string]string{config.AnnotationCPUs: "3", config.AnnotationMemory: "1024", AnnotationSandboxCPUQuota: "150000", AnnotationSandboxCPUPeriod: "100000", AnnotationSandboxMemory: "268435456"}, base},
	} {
		if got := PodResources(cfg, tc.ann, base); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
