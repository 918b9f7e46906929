package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/boxlite/boxlite-shim/test/ctrd"

	"github.com/boxlite/boxlite-shim/runtime/vmm"
)

// emuLabel qualifies every figure of the "guest boot under emulation"
// section: the guest boots under QEMU's TCG (test/libkrun-qemu), so no
// figure compares with a KVM boot, nor with runc.
const emuLabel = "QEMU TCG software emulation, not comparable with KVM"

// emuVariants are the kernel variants booted under emulation.
var emuVariants = []string{"lean", "net"}

// bootSegments are the rows of one variant's emulated boot, in order; each
// is one value of a bootSample.
var bootSegments = []struct{ figure, what string }{
	{"VMM start to kernel entry", "the VMM spawned until krun_start_enter (phase vmm-spawn), then the engine's kernel_entry_ms: QEMU started, boot stub, kernel entered"},
	{"kernel entry to init", "the guest kernel's boot until the engine's init has its file systems mounted: the guest's uptime then (its clock starts in the kernel's first steps, so the kernel entry is placed a little late)"},
	{"init to agent ready", "init until the guest agent says it serves (phase guest-ready less the engine's init_ms)"},
	{"agent ready to container started", "the agent's readiness until the shim's Start returned (time of the start phase line less that of the guest-ready line: connection, cgroups, create, ctr's Start)"},
	{"VMM start to container started (total)", "the four above"},
}

// engineTiming is the emulated engine's timing line from a sandbox's
// vmm.log (test/libkrun-qemu/libkrun_qemu.c), in milliseconds after
// krun_start_enter.
type engineTiming struct {
	QEMUExec, KernelEntry, Init float64
}

// timingPrefix starts the engine's timing line.
const timingPrefix = "libkrun-qemu: timing "

// parseTiming reads the last timing line of a VMM log ("libkrun-qemu:
// timing qemu_exec_ms=M kernel_entry_ms=K init_ms=I").
func parseTiming(log string) (engineTiming, error) {
	var line string
	for _, l := range strings.Split(log, "\n") {
		if strings.HasPrefix(l, timingPrefix) {
			line = l
		}
	}
	if line == "" {
		return engineTiming{}, fmt.Errorf("no %q line (is the engine older than its timing line? make testbins)", strings.TrimSpace(timingPrefix))
	}
	got := map[string]float64{}
	for _, f := range strings.Fields(strings.TrimPrefix(line, timingPrefix)) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return engineTiming{}, fmt.Errorf("timing line %q: field %q is not key=value", line, f)
		}
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return engineTiming{}, fmt.Errorf("timing line %q: %s: %w", line, k, err)
		}
		got[k] = x
	}
	var t engineTiming
	for _, x := range []struct {
		key string
		to  *float64
	}{{"qemu_exec_ms", &t.QEMUExec}, {"kernel_entry_ms", &t.KernelEntry}, {"init_ms", &t.Init}} {
		v, ok := got[x.key]
		if !ok {
			return engineTiming{}, fmt.Errorf("timing line %q has no %s (an init that sends no uptime)", line, x.key)
		}
		*x.to = v
	}
	return t, nil
}

// phaseLine is one "boxlite phase" line: its duration and when it was
// logged.
type phaseLine struct {
	ms float64
	at time.Time
}

// phaseLines reads the shim's phase lines for the given IDs from
// containerd's log: per ID, per phase, the last line.
func phaseLines(logPath string, ids map[string]bool) (map[string]map[string]phaseLine, error) {
	f, err := os.Open(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]map[string]phaseLine{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `msg="boxlite phase"`) {
			continue
		}
		kv := logfmt(line)
		if !ids[kv["id"]] {
			continue
		}
		ms, err := strconv.ParseFloat(kv["ms"], 64)
		if err != nil {
			continue
		}
		at, _ := time.Parse(time.RFC3339Nano, kv["time"]) // zero if absent
		if out[kv["id"]] == nil {
			out[kv["id"]] = map[string]phaseLine{}
		}
		out[kv["id"]][kv["phase"]] = phaseLine{ms: ms, at: at}
	}
	return out, sc.Err()
}

// combine makes one boot's bootSegments values (ms) from its phase lines
// and the engine's timing line. Every piece must be there, and no segment
// may be negative (the clocks disagreeing).
func combine(ph map[string]phaseLine, t engineTiming) ([]float64, error) {
	for _, p := range []string{"vmm-spawn", "guest-ready", "start"} {
		if _, ok := ph[p]; !ok {
			return nil, fmt.Errorf("no %s phase line in containerd's log", p)
		}
	}
	ready, start := ph["guest-ready"].at, ph["start"].at
	if ready.IsZero() || start.IsZero() {
		return nil, fmt.Errorf("the guest-ready or start phase line has no time")
	}
	segs := []float64{
		ph["vmm-spawn"].ms + t.KernelEntry,
		t.Init - t.KernelEntry,
		ph["guest-ready"].ms - t.Init,
		float64(start.Sub(ready).Microseconds()) / 1000,
	}
	total := 0.0
	for i, s := range segs {
		if s < 0 {
			return nil, fmt.Errorf("%s is negative (%.3f ms): phases %v, engine %+v", bootSegments[i].figure, s, ph, t)
		}
		segs[i] = roundUs(s)
		total += s
	}
	return append(segs, roundUs(total)), nil
}

// engineMissing says why the emulated engine cannot run here ("" if it
// can): the engine (make testbins), its helpers beside it, QEMU and
// virtiofsd (make deps).
func engineMissing(lib string) string {
	dir := filepath.Dir(lib)
	for _, p := range []string{lib, filepath.Join(dir, "bootstub"), filepath.Join(dir, "init.krun")} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Sprintf("the emulated engine is not built (%v): make testbins", err)
		}
	}
	if !vmm.IsTestEngine(lib) {
		return lib + " is not the emulated engine (no krun_test_engine_qemu): make testbins"
	}
	if _, err := os.Stat(filepath.Join(dir, "vhost-device-vsock")); err != nil {
		if _, err := exec.LookPath("vhost-device-vsock"); err != nil {
			return "no vhost-device-vsock beside the engine or on PATH: make deps, then make testbins"
		}
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return "no qemu-system-x86_64 on PATH (Debian's qemu-system-x86): make deps"
	}
	if fi, err := os.Stat("/usr/lib/qemu/virtiofsd"); err != nil || fi.Mode()&0o111 == 0 {
		return "no /usr/lib/qemu/virtiofsd (Debian 12's qemu-system-common): make deps"
	}
	return ""
}

// embeddedKernels are the variants the shim's `-v` lists ("Embedded
// kernels: lean, net").
func embeddedKernels(version string) map[string]bool {
	out := map[string]bool{}
	for _, line := range strings.Split(version, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || k != "Embedded kernels" {
			continue
		}
		for _, n := range strings.Split(v, ",") {
			if n = strings.TrimSpace(n); n != "" && n != "none" {
				out[n] = true
			}
		}
	}
	return out
}

// emulation is the section "guest boot under emulation": for each kernel
// variant, -emu-reps detached containers (`ctr run -d`, annotation
// io.boxlite.kernel) on a shim config naming the emulated engine, each
// boot split at the VMM's start, the kernel's entry, init, the agent's
// readiness and the container's start, from the shim's phase lines and the
// engine's timing line in the sandbox's vmm.log. Each container is removed
// before the next starts.
func (b *bench) emulation(ctx context.Context) {
	lib, _ := filepath.Abs(filepath.Join(b.bin, "test", "libkrun-qemu", "libkrun.so.1"))
	why := engineMissing(lib)
	var cfg string
	var kernels map[string]bool
	if why == "" {
		out, err := exec.Command(filepath.Join(b.bin, "containerd-shim-boxlite-v2"), "-v").Output()
		if err != nil {
			b.errorf("emulated boot: shim -v: %v", err)
		}
		kernels = embeddedKernels(string(out))
		cfg = filepath.Join(b.dir, "shim-engine.toml")
		body := fmt.Sprintf("libkrun_path = %q\nstate_dir = %q\ncache_dir = %q\n", lib, b.stateDir, filepath.Join(b.dir, "cache"))
		if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
			b.h.Fatal(err)
		}
	}
	for _, v := range emuVariants {
		whyV := why
		if whyV == "" && !kernels[v] {
			whyV = fmt.Sprintf("the shim embeds no %s kernel: make KERNELS=\"lean net\" build", v)
		}
		if whyV != "" {
			for _, s := range bootSegments {
				b.add(Row{Figure: emuFigure(v, s.figure), Runtime: boxlite, Label: emuLabel, NotMeasured: whyV})
			}
			continue
		}
		b.emulatedBoots(ctx, cfg, v)
	}
}

// roundUs rounds milliseconds to the microsecond, the precision of the
// inputs (the sums and differences leave floating-point noise).
func roundUs(ms float64) float64 { return math.Round(ms*1000) / 1000 }

func emuFigure(variant, segment string) string {
	return fmt.Sprintf("emulated boot %s: %s", variant, segment)
}

// emulatedBoots boots -emu-reps containers of kernel variant v on the
// engine's shim config and adds the variant's rows.
func (b *bench) emulatedBoots(ctx context.Context, cfg, v string) {
	b.logf("emulated boot (%s kernel, QEMU TCG): %d containers, one at a time", v, b.o.emuReps)
	timings := map[string]engineTiming{}
	ids := map[string]bool{}
	var order []string // the measured IDs, in run order
	attempts := 0
	for i := 0; i < b.o.emuReps && ctx.Err() == nil; i++ {
		attempts++
		id := b.newID(boxlite, "emu-"+v)
		b.live[id] = true
		_, err := b.ctr(ctx, "run", "--runtime", runtimeName, "--runtime-config-path", cfg, "-d",
			"--annotation", "io.boxlite.kernel="+v, b.img, id, "sleep", "3600")
		if err == nil {
			// The VMM's log, while the task runs: the sandbox directory
			// goes with the task.
			var log []byte
			log, err = os.ReadFile(filepath.Join(b.stateDir, ns, id, "vmm", vmm.VMMLogName))
			if err == nil {
				timings[id], err = parseTiming(string(log))
			}
		}
		if rerr := b.remove(id); rerr != nil {
			b.errorf("emulated boot %s: %v", v, rerr)
		}
		if err != nil {
			b.errorf("emulated boot %s (%s): %v", v, id, err)
			delete(timings, id)
			continue
		}
		ids[id] = true
		order = append(order, id)
	}
	lines, err := phaseLines(b.d.Log, ids)
	if err != nil {
		b.errorf("emulated boot %s: containerd's log: %v", v, err)
	}
	samples := make([][]float64, len(bootSegments))
	for _, id := range order {
		segs, err := combine(lines[id], timings[id])
		if err != nil {
			b.errorf("emulated boot %s (%s): %v", v, id, err)
			continue
		}
		for i, s := range segs {
			samples[i] = append(samples[i], s)
		}
	}
	for i, s := range bootSegments {
		sum := summarize(samples[i])
		fails := attempts - sum.N
		r := Row{Figure: emuFigure(v, s.figure), Runtime: boxlite, Label: emuLabel, Unit: "ms", Summary: &sum,
			Failures: &fails, Attempts: attempts, Note: s.what}
		if sum.N == 0 {
			r.Summary, r.NotMeasured = nil, "every attempt failed (see errors)"
		}
		b.add(r)
	}
}

// engineProcesses lists the emulated engine's helpers still running
// (ctrd.EngineProcesses) as leftovers.
func engineProcesses() []string {
	var out []string
	for _, p := range ctrd.EngineProcesses() {
		out = append(out, "process: "+p)
	}
	return out
}
