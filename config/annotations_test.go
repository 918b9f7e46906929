package config

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
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

func TestResources(t *testing.T) {
	c := Default()
	c.Annotations.Enabled = []string{AnnotationWildcard}
	r, err := c.Resources(nil)
	if err != nil || r != (Resources{CPUs: 1, MemoryMiB: 512}) {
		t.Fatalf("Resources(nil) = %+v, %v", r, err)
	}
	r, err = c.Resources(map[string]string{AnnotationCPUs: "4", AnnotationMemory: "2048", AnnotationKernel: "net"})
	if err != nil || r != (Resources{CPUs: 4, MemoryMiB: 2048}) {
		t.Fatalf("Resources = %+v, %v", r, err)
	}
	_, err = c.Resources(map[string]string{AnnotationCPUs: "40"})
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("Resources with cpus 40: %v", err)
	}
}
