package preflight

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"

	"github.com/boxlite/boxlite-shim/config"
	"github.com/boxlite/boxlite-shim/runtime/vmm"
)

// LibkrunInfo is what `boxlite-vmm -probe` found (cmd/boxlite-vmm).
type LibkrunInfo struct {
	Requested string `json:"requested"`
	Loaded    string `json:"loaded"`
	File      string `json:"file"`
	// Version is libkrun's version, or the range its symbols give when
	// VersionExact is false; VersionFrom says how it was told (the file
	// name, the exported symbols: cmd/boxlite-vmm/krunver.c).
	Version      string `json:"version"`
	VersionExact bool   `json:"version_exact"`
	VersionFrom  string `json:"version_from"`
	// Supported: it runs the staged kernels (1.18.1 or newer); Unsupported
	// says why not and what to do. Every VMM start refuses the same.
	Supported   bool     `json:"supported"`
	Unsupported string   `json:"unsupported"`
	TestDouble  bool     `json:"test_double"`
	NetTap      bool     `json:"net_tap"`
	Missing     []string `json:"missing"`
	Error       string   `json:"error"`
}

// Usable says whether a VMM can load this libkrun, call everything it needs
// and run the staged kernels with it (the test double included: it is
// usable, but boots no VM).
func (l LibkrunInfo) Usable() bool {
	return l.Loaded != "" && l.Error == "" && len(l.Missing) == 0 && l.Supported
}

// installLibkrun is the fix for a missing libkrun.
func installLibkrun(cfg *config.Config) string {
	return fmt.Sprintf("install libkrun 1.18.1 or newer (libkrun.so.1: your distribution's libkrun package, or built from github.com/containers/libkrun) where the dynamic loader finds it, or set libkrun_path in %s", configName(cfg))
}

func configName(cfg *config.Config) string {
	if cfg.Path != "" {
		return cfg.Path
	}
	return config.DefaultPath
}

// Libkrun loads the configured libkrun the way a sandbox's VMM does (the
// shim has no cgo, so it asks boxlite-vmm -probe) and reports its version
// and how it was told, or what is missing and how to get it. A libkrun too
// old for the staged kernels (older than 1.18.1, or a 1.18.x whose patch
// level cannot be told) fails, as every VMM start would. The test double is
// reported as such: it fails the preflight, since it boots no VM.
func Libkrun(cfg *config.Config) (Result, LibkrunInfo) {
	r := Result{Name: "libkrun"}
	lib := cfg.LibkrunPath
	if lib == "" {
		lib = vmm.DefaultLibkrun
	}
	info := LibkrunInfo{Requested: lib}
	bin, err := vmm.BesideShim(vmm.VMMBinaryName)
	if err != nil {
		r.Status, r.Detail = Fail, err.Error()
		return r, info
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "-probe", "-libkrun", lib)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var exitErr *exec.ExitError
	if runErr != nil && !errors.As(runErr, &exitErr) {
		r.Status = Fail
		r.Detail = fmt.Sprintf("cannot run %s: %v", bin, runErr)
		r.Fix = "install boxlite-vmm beside the shim (make vmm), built with cgo"
		return r, info
	}
	if err := json.Unmarshal(stdout.Bytes(), &info); err != nil {
		r.Status = Fail
		r.Detail = fmt.Sprintf("%s -probe: %v; it said: %s", bin, runErr, strings.TrimSpace(stderr.String()))
		r.Fix = "install a boxlite-vmm built with cgo beside the shim (make vmm)"
		return r, info
	}
	return libkrunResult(cfg, info), info
}

// libkrunResult is the libkrun line of the report for what -probe found.
func libkrunResult(cfg *config.Config, info LibkrunInfo) Result {
	r := Result{Name: "libkrun"}
	lib := info.Requested
	version := fmt.Sprintf("libkrun %s (%s)", info.Version, info.VersionFrom)
	switch {
	case info.Loaded == "":
		r.Status = Fail
		r.Detail = fmt.Sprintf("%s cannot be loaded: %s", lib, info.Error)
		r.Fix = installLibkrun(cfg)
	case slices.Contains(info.Missing, "krun_create_ctx"): // every libkrun has it
		r.Status = Fail
		r.Detail = fmt.Sprintf("%s is not libkrun: it has none of the krun_* functions the VMM calls", info.Loaded)
		r.Fix = "point libkrun_path in " + configName(cfg) + " at libkrun.so.1, or remove the key; " + installLibkrun(cfg)
	case len(info.Missing) > 0:
		r.Status = Fail
		r.Detail = fmt.Sprintf("%s lacks %s", info.Loaded, strings.Join(info.Missing, ", "))
		r.Fix = "install a newer libkrun (1.18.1 or newer), or point libkrun_path at one in " + configName(cfg)
	case !info.Supported && info.Unsupported == "":
		r.Status = Fail
		r.Detail = fmt.Sprintf("%s -probe did not tell libkrun's version (an older boxlite-vmm?)", vmm.VMMBinaryName)
		r.Fix = "install the boxlite-vmm of this release beside the shim (make vmm)"
	case !info.Supported:
		r.Status = Fail
		r.Detail = fmt.Sprintf("%s: %s", info.File, info.Unsupported)
		r.Fix = fmt.Sprintf("install libkrun %s or newer (boxlite supports libkrun %s and newer) under its versioned file name (libkrun.so.1.X.Y), or point libkrun_path in %s at one", minLibkrun, minLibkrun, configName(cfg))
	case info.TestDouble:
		r.Status = Warn
		r.Detail = fmt.Sprintf("%s is the boxlite libkrun test double (tests only): it runs the workload as a host process and boots no VM; it stands for %s", info.Loaded, version)
		r.Fix = "point libkrun_path in " + configName(cfg) + " at a real libkrun.so.1 (your distribution's libkrun package, or built from github.com/containers/libkrun), or remove the key to use the dynamic loader's search path"
	case !info.NetTap:
		r.Status = Warn
		r.Detail = fmt.Sprintf("%s at %s has no krun_add_net_tap: single-container sandboxes run, but Kubernetes pods cannot be given their pod network", version, info.File)
		r.Fix = "install a libkrun built with its network backends (NET=1), or point libkrun_path at one in " + configName(cfg)
	default:
		r.Status = Pass
		r.Detail = fmt.Sprintf("%s loaded from %s", version, info.File)
	}
	return r
}

// minLibkrun is the oldest libkrun the staged kernels work with (the VMM
// refuses older ones: cmd/boxlite-vmm/krunver.c).
const minLibkrun = "1.18.1"
