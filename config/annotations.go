package config

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/boxlite/boxlite-shim/kernel"
)

// Annotations the shim understands. Only the sandbox's annotations count.
const (
	// AnnotationKernel chooses the kernel variant: "lean" or "net".
	AnnotationKernel = kernel.Annotation
	// AnnotationCPUs sets the VM's vCPU count: an integer 1..vm.max_cpus.
	AnnotationCPUs = "io.boxlite.cpus"
	// AnnotationMemory sets the VM's memory in MiB: an integer
	// 128..vm.max_memory_mib.
	AnnotationMemory = "io.boxlite.memory_mib"

	// AnnotationPrefix starts every annotation this shim owns; the shim
	// refuses those it does not know or that are not enabled.
	AnnotationPrefix = "io.boxlite."
	// AnnotationWildcard in [annotations] enabled enables every known
	// annotation.
	AnnotationWildcard = "io.boxlite.*"

	// MaxAnnotationValueLen is the longest io.boxlite.* value accepted, in
	// bytes.
	MaxAnnotationValueLen = 256
)

// KnownAnnotations lists the annotations the shim understands, sorted.
func KnownAnnotations() []string {
	return []string{AnnotationCPUs, AnnotationKernel, AnnotationMemory}
}

func isKnownAnnotation(key string) bool {
	return slices.Contains(KnownAnnotations(), key)
}

// AnnotationEnabled reports whether key is a known annotation enabled by
// [annotations] enabled (directly or through AnnotationWildcard).
func (c *Config) AnnotationEnabled(key string) bool {
	if !isKnownAnnotation(key) {
		return false
	}
	return slices.Contains(c.Annotations.Enabled, key) || slices.Contains(c.Annotations.Enabled, AnnotationWildcard)
}

// EnabledAnnotations lists the known annotations that are enabled, sorted,
// with AnnotationWildcard expanded.
func (c *Config) EnabledAnnotations() []string {
	var out []string
	for _, a := range KnownAnnotations() {
		if c.AnnotationEnabled(a) {
			out = append(out, a)
		}
	}
	return out
}

// whereToEnable names the place an operator edits to enable an annotation.
func (c *Config) whereToEnable() string {
	switch {
	case c.Path != "":
		return c.Path
	case c.Source == SourceOptionsBody:
		return "the runtime's options in containerd's configuration (they are passed as config_body)"
	case c.Source != "" && c.Source != SourceDefaults:
		return c.Source
	default:
		return defaultPath + " (absent now: the built-in defaults are in use; create it)"
	}
}

// CheckAnnotations is the shim's own annotation gate, after containerd's
// pod_annotations list. Every io.boxlite.* key must be known and enabled,
// and its value valid: kernel a known variant (kernel.Parse; whether the
// variant is allowed is decided by Request), cpus an integer
// 1..vm.max_cpus, memory_mib an integer 128..vm.max_memory_mib, no value
// longer than MaxAnnotationValueLen bytes. Other keys are ignored. Keys are
// checked in sorted order and the first problem is returned; it matches
// errdefs.ErrInvalidArgument.
func (c *Config) CheckAnnotations(annotations map[string]string) error {
	_, err := c.read(annotations)
	return err
}

// read is CheckAnnotations, keeping the parsed values.
func (c *Config) read(annotations map[string]string) (asked, error) {
	var a asked
	for _, key := range sortedKeys(annotations) {
		if !strings.HasPrefix(key, AnnotationPrefix) {
			continue
		}
		value := annotations[key]
		if !isKnownAnnotation(key) {
			return asked{}, invalidf("annotation %s is not one this shim understands: known annotations are %s; remove it from the pod or container", quote(key), strings.Join(KnownAnnotations(), ", "))
		}
		if !c.AnnotationEnabled(key) {
			return asked{}, invalidf("annotation %s is not enabled: to honour it, add %q to [annotations] enabled in %s (enabled now: %s)", key, key, c.whereToEnable(), enabledList(c.EnabledAnnotations()))
		}
		if len(value) > MaxAnnotationValueLen {
			return asked{}, invalidf("annotation %s = %s: value is %d bytes, longer than the %d accepted", key, quote(value), len(value), MaxAnnotationValueLen)
		}
		if err := c.parseAnnotation(key, value, &a); err != nil {
			return asked{}, err
		}
	}
	return a, nil
}

func enabledList(a []string) string {
	if len(a) == 0 {
		return "none"
	}
	return strings.Join(a, ", ")
}

func (c *Config) parseAnnotation(key, value string, a *asked) error {
	var err error
	switch key {
	case AnnotationKernel:
		if a.kernel, err = kernel.Parse(value); err != nil {
			return invalidf("annotation %s = %s: not a known kernel variant; accepted: one of %s", key, quote(value), variantList())
		}
	case AnnotationCPUs:
		if a.cpus, err = parseBounded(value, 1, c.VM.MaxCPUs); err != nil {
			return invalidf("annotation %s = %s: %v; accepted: an integer from 1 to vm.max_cpus (%d)", key, quote(value), err, c.VM.MaxCPUs)
		}
	case AnnotationMemory:
		if a.memoryMiB, err = parseBounded(value, MinMemoryMiB, c.VM.MaxMemoryMiB); err != nil {
			return invalidf("annotation %s = %s: %v; accepted: an integer (MiB) from %d to vm.max_memory_mib (%d)", key, quote(value), err, MinMemoryMiB, c.VM.MaxMemoryMiB)
		}
	}
	return nil
}

// parseBounded parses a plain decimal integer (no sign, no spaces) within
// [lo, hi].
func parseBounded(s string, lo, hi int) (int, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("out of range")
	}
	if err != nil {
		return 0, fmt.Errorf("not a plain decimal integer")
	}
	if int(n) < lo || int(n) > hi {
		return 0, fmt.Errorf("out of range")
	}
	return int(n), nil
}
