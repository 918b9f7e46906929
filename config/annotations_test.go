package config

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/boxlite/boxlite-shim/kernel"
)

func TestKnownAnnotationsSorted(t *testing.T) {
	k := KnownAnnotations()
	if !slices.IsSorted(k) || len(k) != 3 {
		t.Errorf("KnownAnnotations() = %q", k)
	}
	for _, a := range k {
		if !strings.HasPrefix(a, AnnotationPrefix) {
			t.Errorf("%q lacks prefix %q", a, AnnotationPrefix)
		}
	}
	k[0] = "x"
	if KnownAnnotations()[0] != AnnotationCPUs {
		t.Error("KnownAnnotations shares storage")
	}
}

func TestCheckAnnotations(t *testing.T) {
	const known = "known annotations are io.boxlite.cpus, io.boxlite.kernel, io.boxlite.memory_mib"
	fromFile := func(enabled ...string) *Config {
		c := Default()
		c.Path, c.Source = "/etc/boxlite/test.toml", "/etc/boxlite/test.toml"
		c.Annotations.Enabled = enabled
		return c
	}
	all := fromFile(AnnotationWildcard)
	listed := fromFile(AnnotationKernel, AnnotationCPUs, AnnotationMemory)
	defaults := Default()
	body := Default()
	body.Source = SourceOptionsBody
	long := strings.Repeat("n", 300)

	for _, tc := range []struct {
		name  string
		cfg   *Config
		ann   map[string]string
		wants []string // nil: no error
	}{
		{"nil map", defaults, nil, nil},
		{"no boxlite keys", defaults, map[string]string{"io.kubernetes.cri.container-type": "sandbox", "foo": "bar"}, nil},
		{"non-boxlite keys ignored even when huge or odd", defaults, map[string]string{
			"io.kubernetes.cri.sandbox-id": long, "io.boxlitex.kernel": "fat", "io.boxlite": "x", "IO.BOXLITE.KERNEL": "fat", "": "",
		}, nil},
		{"kernel enabled by default", defaults, map[string]string{AnnotationKernel: "net"}, nil},
		{"kernel lean", defaults, map[string]string{AnnotationKernel: "lean"}, nil},
		{"everything listed", listed, map[string]string{AnnotationKernel: "net", AnnotationCPUs: "8", AnnotationMemory: "8192"}, nil},
		{"wildcard", all, map[string]string{AnnotationCPUs: "1", AnnotationMemory: "128"}, nil},

		{"unknown boxlite key", all, map[string]string{"io.boxlite.foo": "1"}, []string{`annotation "io.boxlite.foo" is not one this shim understands`, known}},
		{"unknown boxlite key with empty suffix", all, map[string]string{"io.boxlite.": "1"}, []string{`annotation "io.boxlite."`, known}},
		{"wildcard is not an annotation", all, map[string]string{AnnotationWildcard: "1"}, []string{`"io.boxlite.*" is not one`}},
		{"huge unknown key is cut", all, map[string]string{"io.boxlite." + long: "1"}, []string{"is not one this shim understands", "(311 bytes)"}},
		{"kernel not enabled", fromFile(), map[string]string{AnnotationKernel: "net"}, []string{
			"annotation io.boxlite.kernel is not enabled", `add "io.boxlite.kernel" to [annotations] enabled in /etc/boxlite/test.toml`, "(enabled now: none)"}},
		{"cpus not enabled by default", defaults, map[string]string{AnnotationCPUs: "2"}, []string{
			"annotation io.boxlite.cpus is not enabled", `add "io.boxlite.cpus" to [annotations] enabled in /etc/boxlite/config.toml`, "create it", "(enabled now: io.boxlite.kernel)"}},
		{"memory not enabled in a body", body, map[string]string{AnnotationMemory: "256"}, []string{
			"annotation io.boxlite.memory_mib is not enabled", `add "io.boxlite.memory_mib" to [annotations] enabled in the runtime's options in containerd's configuration`}},
		{"not enabled is checked before the value", fromFile(), map[string]string{AnnotationKernel: "fat"}, []string{"is not enabled"}},

		{"kernel unknown", defaults, map[string]string{AnnotationKernel: "fat"}, []string{`annotation io.boxlite.kernel = "fat": not a known kernel variant; accepted: one of lean, net`}},
		{"kernel empty", defaults, map[string]string{AnnotationKernel: ""}, []string{`io.boxlite.kernel = ""`, "lean, net"}},
		{"kernel spaces", defaults, map[string]string{AnnotationKernel: " net"}, []string{`io.boxlite.kernel = " net"`, "lean, net"}},
		{"kernel case", defaults, map[string]string{AnnotationKernel: "NET"}, []string{`io.boxlite.kernel = "NET"`}},
		{"kernel huge", defaults, map[string]string{AnnotationKernel: long}, []string{"io.boxlite.kernel", "value is 300 bytes, longer than the 256 accepted", "(300 bytes)"}},
		{"cpus zero", all, map[string]string{AnnotationCPUs: "0"}, []string{`io.boxlite.cpus = "0": out of range; accepted: an integer from 1 to vm.max_cpus (8)`}},
		{"cpus over max", all, map[string]string{AnnotationCPUs: "9"}, []string{`io.boxlite.cpus = "9"`, "from 1 to vm.max_cpus (8)"}},
		{"cpus negative", all, map[string]string{AnnotationCPUs: "-1"}, []string{`io.boxlite.cpus = "-1": not a plain decimal integer`, "from 1 to vm.max_cpus (8)"}},
		{"cpus plus sign", all, map[string]string{AnnotationCPUs: "+2"}, []string{`io.boxlite.cpus = "+2"`, "not a plain decimal integer"}},
		{"cpus float", all, map[string]string{AnnotationCPUs: "2.0"}, []string{`io.boxlite.cpus = "2.0"`}},
		{"cpus word", all, map[string]string{AnnotationCPUs: "two"}, []string{`io.boxlite.cpus = "two"`}},
		{"cpus space", all, map[string]string{AnnotationCPUs: "2 "}, []string{`io.boxlite.cpus = "2 "`}},
		{"cpus empty", all, map[string]string{AnnotationCPUs: ""}, []string{`io.boxlite.cpus = ""`}},
		{"cpus overflow", all, map[string]string{AnnotationCPUs: "99999999999999999999"}, []string{`io.boxlite.cpus = "99999999999999999999": out of range`}},
		{"cpus wraps uint32", all, map[string]string{AnnotationCPUs: "4294967297"}, []string{`io.boxlite.cpus = "4294967297"`, "out of range"}},
		{"memory under", all, map[string]string{AnnotationMemory: "127"}, []string{`io.boxlite.memory_mib = "127": out of range; accepted: an integer (MiB) from 128 to vm.max_memory_mib (8192)`}},
		{"memory over", all, map[string]string{AnnotationMemory: "8193"}, []string{`io.boxlite.memory_mib = "8193"`, "to vm.max_memory_mib (8192)"}},
		{"memory with unit", all, map[string]string{AnnotationMemory: "512Mi"}, []string{`io.boxlite.memory_mib = "512Mi"`, "not a plain decimal integer"}},
		{"memory huge", all, map[string]string{AnnotationMemory: strings.Repeat("1", 257)}, []string{"value is 257 bytes"}},
		{"first problem in key order", all, map[string]string{AnnotationMemory: "1", AnnotationCPUs: "0"}, []string{"io.boxlite.cpus"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.CheckAnnotations(tc.ann)
			if tc.wants == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			wantContains(t, err, tc.wants...)
			if len(err.Error()) > 600 {
				t.Errorf("message is %d bytes long", len(err.Error()))
			}
		})
	}
}

func TestCheckAnnotationsHintUsesDefaultPath(t *testing.T) {
	p := filepath.Join(t.TempDir(), "absent.toml")
	withDefaultPath(t, p)
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	err = c.CheckAnnotations(map[string]string{AnnotationCPUs: "2"})
	wantContains(t, err, "to [annotations] enabled in "+p)
}

// TestRequest: one reading of a sandbox's annotations gives its kernel and
// VM size: io.boxlite.* where given, a CRI pod's limits, else the config.
func TestRequest(t *testing.T) {
	c := Default() // cpus 1, memory 512, max 8 / 8192, overhead 64
	c.Annotations.Enabled = []string{AnnotationWildcard}
	pod := func(kv ...string) map[string]string {
		m := map[string]string{AnnotationContainerType: ContainerTypeSandbox}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name string
		ann  map[string]string
		want Request
	}{
		{"nothing: the config", nil, Request{Kernel: "lean", CPUs: 1, MemoryMiB: 512}},
		{"io.boxlite.*", map[string]string{AnnotationCPUs: "4", AnnotationMemory: "2048", AnnotationKernel: "net"}, Request{Kernel: "net", CPUs: 4, MemoryMiB: 2048}},
		{"pod without limits", pod(), Request{Kernel: "lean", CPUs: 1, MemoryMiB: 512}},
		{"pod cpu rounded up", pod(AnnotationSandboxCPUQuota, "150000", AnnotationSandboxCPUPeriod, "100000"), Request{Kernel: "lean", CPUs: 2, MemoryMiB: 512}},
		{"pod memory plus overhead", pod(AnnotationSandboxMemory, "268435456"), Request{Kernel: "lean", CPUs: 1, MemoryMiB: 256 + 64}},
		{"pod partial MiB rounded up, then the minimum", pod(AnnotationSandboxMemory, "1048577"), Request{Kernel: "lean", CPUs: 1, MemoryMiB: MinMemoryMiB}},
		{"pod bounded by the maxima", pod(AnnotationSandboxCPUQuota, "10000000", AnnotationSandboxCPUPeriod, "100000", AnnotationSandboxMemory, "1099511627776"), Request{Kernel: "lean", CPUs: 8, MemoryMiB: 8192}},
		{"pod without a quota (-1)", pod(AnnotationSandboxCPUQuota, "-1", AnnotationSandboxCPUPeriod, "100000"), Request{Kernel: "lean", CPUs: 1, MemoryMiB: 512}},
		{"io.boxlite.* wins over the pod's limits", pod(AnnotationCPUs, "3", AnnotationMemory, "1024", AnnotationSandboxCPUQuota, "150000", AnnotationSandboxCPUPeriod, "100000", AnnotationSandboxMemory, "268435456"), Request{Kernel: "lean", CPUs: 3, MemoryMiB: 1024}},
		{"a container's limits do not size a VM", map[string]string{AnnotationContainerType: ContainerTypeContainer, AnnotationSandboxMemory: "268435456"}, Request{Kernel: "lean", CPUs: 1, MemoryMiB: 512}},
	} {
		r, err := c.Request(tc.ann)
		if err != nil || r != tc.want {
			t.Errorf("%s: %+v, %v; want %+v", tc.name, r, err, tc.want)
		}
	}
	for _, bad := range []map[string]string{{AnnotationCPUs: "40"}, {AnnotationKernel: "fat"}} {
		if _, err := c.Request(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Request(%v): %v, want invalid argument", bad, err)
		}
	}
	c.Kernel.Allowed = []kernel.Name{kernel.Lean}
	if _, err := c.Request(map[string]string{AnnotationKernel: "net"}); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "not allowed") {
		t.Errorf("a variant the config does not allow: %v", err)
	}
}

// TestAdmit: a container joining a pod may repeat what the pod's VM is, and
// is refused when it asks for another kernel or size.
func TestAdmit(t *testing.T) {
	c := Default()
	c.Annotations.Enabled = []string{AnnotationWildcard}
	r := Request{Kernel: "net", CPUs: 2, MemoryMiB: 320}
	for _, tc := range []struct {
		ann  map[string]string
		want string // "" = admitted
	}{
		{nil, ""},
		{map[string]string{AnnotationKernel: "net", AnnotationCPUs: "2", AnnotationMemory: "320"}, ""},
		{map[string]string{AnnotationKernel: "lean"}, `asks for kernel "lean"`},
		{map[string]string{AnnotationCPUs: "4"}, "asks for io.boxlite.cpus=4, but its pod p's VM has 2"},
		{map[string]string{AnnotationMemory: "512"}, "asks for io.boxlite.memory_mib=512"},
		{map[string]string{AnnotationKernel: "fat"}, "not a known kernel variant"},
	} {
		err := r.Admit(c, "c1", "p", tc.ann)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%v: %v", tc.ann, err)
			}
			continue
		}
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.ann, err, tc.want)
		}
	}
}
