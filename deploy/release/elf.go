package main

import (
	"debug/elf"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// binaryFacts are what the release says about its binaries.
type binaryFacts struct {
	// vmmGlibc is the newest glibc symbol version boxlite-vmm references
	// ("2.34"): the oldest glibc it runs on.
	vmmGlibc string
	// vmmLibs are the shared libraries boxlite-vmm needs (DT_NEEDED).
	vmmLibs []string
	// kernels are the kernel variants embedded in the shim.
	kernels []string
}

// inspectBinaries checks the binaries in bin before they are packed: the
// shim says it is version and embeds lean and net; the shim and the agent
// (the guest's init) are static; boxlite-vmm is dynamically linked against
// glibc, whose oldest usable version it records.
func inspectBinaries(bin, version string) (binaryFacts, error) {
	var facts binaryFacts
	shim := filepath.Join(bin, "containerd-shim-boxlite-v2")
	out, err := exec.Command(shim, "-version").Output()
	if err != nil {
		return facts, fmt.Errorf("%s -version: %w", shim, err)
	}
	fields := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			fields[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	if got := fields["Version"]; got != version {
		return facts, fmt.Errorf("%s reports version %q, the release is %q: build it with VERSION=%s", shim, got, version, version)
	}
	for _, k := range strings.Split(fields["Embedded kernels"], ",") {
		if k = strings.TrimSpace(k); k != "" {
			facts.kernels = append(facts.kernels, k)
		}
	}
	if strings.Join(facts.kernels, " ") != "lean net" {
		return facts, fmt.Errorf("%s embeds kernels %v: a release embeds lean and net (make KERNELS=\"lean net\")", shim, facts.kernels)
	}
	for _, b := range []string{"containerd-shim-boxlite-v2", "boxlite-agent"} {
		libs, err := dynamicDeps(filepath.Join(bin, b))
		if err != nil {
			return facts, err
		}
		if libs != nil {
			return facts, fmt.Errorf("%s is dynamically linked (%v): it must be static (CGO_ENABLED=0)", b, libs)
		}
	}
	vmm := filepath.Join(bin, "boxlite-vmm")
	if facts.vmmLibs, err = dynamicDeps(vmm); err != nil {
		return facts, err
	}
	if facts.vmmGlibc, err = glibcNeeded(vmm); err != nil {
		return facts, err
	}
	return facts, nil
}

// dynamicDeps lists the shared libraries an ELF executable needs; nil for a
// static one (no program interpreter, no DT_NEEDED).
func dynamicDeps(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	libs, err := f.ImportedLibraries()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP && libs == nil {
			libs = []string{}
		}
	}
	if libs == nil {
		return nil, nil
	}
	return libs, nil
}

// glibcNeeded is the newest GLIBC_x.y[.z] version an ELF file's dynamic
// symbols require (the version needs of libc.so.6 and its kin), without the
// prefix: the oldest glibc it runs on. This is what `objdump -T FILE | grep
// GLIBC_` shows, by hand.
func glibcNeeded(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	syms, err := f.ImportedSymbols()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	var best []int
	bestName := ""
	for _, s := range syms {
		v, ok := strings.CutPrefix(s.Version, "GLIBC_")
		if !ok {
			continue
		}
		n, ok := versionNumbers(v)
		if !ok {
			continue
		}
		if best == nil || lessVersion(best, n) {
			best, bestName = n, v
		}
	}
	if best == nil {
		return "", fmt.Errorf("%s references no GLIBC_ symbol version: boxlite-vmm is the cgo build, linked against glibc", path)
	}
	return bestName, nil
}

func versionNumbers(v string) ([]int, bool) {
	var out []int
	for _, p := range strings.Split(v, ".") {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, false
		}
		out = append(out, n)
	}
	return out, true
}

func lessVersion(a, b []int) bool {
	for i := 0; i < len(a) || i < len(b); i++ {
		var x, y int
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			return x < y
		}
	}
	return false
}
