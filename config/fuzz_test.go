package config

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		Example,
		"",
		"[kernel]\ndefault = \"net\"\nallowed = [\"net\"]\n[kernel.paths]\nnet = \"/k/net.so\"\n",
		"[annotations]\nenabled = [\"io.boxlite.*\"]\n",
		"[vm]\ncpus = \"2\"\n",
		"[[vm]]\ncpus = 1\n",
		"frob = 1\n[kernel]\ndefualt = \"net\"\n",
		"a.b.c = 1\n\"x\" = [1, 2.5, {y = 3}]\n",
		"TypeUrl = \"t\"\nConfigPath = \"\"\n",
		"cpus = \n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.toml")
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("error does not match ErrInvalidArgument: %v", err)
			}
			if !strings.HasPrefix(err.Error(), "boxlite config fuzz.toml: ") {
				t.Fatalf("error does not name the source: %v", err)
			}
		} else {
			if err := c.Validate(); err != nil {
				t.Fatalf("Parse accepted a config that does not validate: %v", err)
			}
			p := c.KernelPolicy()
			if !slices.Contains(p.Allowed, p.Default) {
				t.Fatalf("default %q not in allowed %q", p.Default, p.Allowed)
			}
			if c.VM.CPUs < 1 || c.VM.CPUs > c.VM.MaxCPUs || c.VM.MaxCPUs > MaxVCPUs ||
				c.VM.MemoryMiB < MinMemoryMiB || c.VM.MemoryMiB > c.VM.MaxMemoryMiB || c.VM.MaxMemoryMiB > MaxMemoryMiB {
				t.Fatalf("VM out of bounds: %+v", c.VM)
			}
		}
		// The runtime-options body path must not panic either.
		if _, err := parseOptionsBody(data); err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Fatalf("body error does not match ErrInvalidArgument: %v", err)
		}
	})
}

func FuzzCheckAnnotations(f *testing.F) {
	f.Add(AnnotationKernel, "net", false)
	f.Add(AnnotationKernel, "fat", false)
	f.Add(AnnotationCPUs, "4", true)
	f.Add(AnnotationCPUs, "-1", true)
	f.Add(AnnotationMemory, "99999999999999999999", true)
	f.Add("io.boxlite.foo", "x", true)
	f.Add("io.kubernetes.cri.container-type", "sandbox", false)
	f.Add(AnnotationKernel, strings.Repeat("x", 300), true)
	f.Fuzz(func(t *testing.T, key, value string, wildcard bool) {
		c := Default()
		if wildcard {
			c.Annotations.Enabled = []string{AnnotationWildcard}
		}
		ann := map[string]string{key: value}
		err := c.CheckAnnotations(ann)
		if !strings.HasPrefix(key, AnnotationPrefix) {
			if err != nil {
				t.Fatalf("non-boxlite key %q refused: %v", key, err)
			}
			return
		}
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("error does not match ErrInvalidArgument: %v", err)
			}
			if len(err.Error()) > 1000 {
				t.Fatalf("message is %d bytes", len(err.Error()))
			}
			return
		}
		if !c.AnnotationEnabled(key) || len(value) > MaxAnnotationValueLen {
			t.Fatalf("accepted %q = %q (enabled %q)", key, value, c.Annotations.Enabled)
		}
		r, err := c.Request(ann)
		if err != nil {
			// CheckAnnotations does not decide whether a variant is allowed.
			if key == AnnotationKernel && strings.Contains(err.Error(), "not allowed") {
				return
			}
			t.Fatalf("Request refused what CheckAnnotations accepted: %v", err)
		}
		if r.CPUs < 1 || r.CPUs > c.VM.MaxCPUs || r.MemoryMiB < MinMemoryMiB || r.MemoryMiB > c.VM.MaxMemoryMiB || r.Kernel == "" {
			t.Fatalf("Request out of bounds: %+v", r)
		}
	})
}
