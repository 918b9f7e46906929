package main

import (
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/boxlite/boxlite-shim/kernel"
)

// BenchmarkExtract measures kernel.Extract of each kernel embedded in the
// test binary, into an empty cache (cold) and into a cache that already
// holds it (warm: the cached file's SHA-256 is verified). It needs the
// kernel build tags:
//
//	go test -tags 'kernel_lean kernel_net' -run '^$' -bench Extract ./test/bench
func BenchmarkExtract(b *testing.B) {
	embedded := kernel.Embedded()
	if len(embedded) == 0 {
		b.Skip("this test binary embeds no kernel: run with -tags 'kernel_lean kernel_net'")
	}
	for _, n := range embedded {
		b.Run(fmt.Sprintf("%s/cold", n), func(b *testing.B) {
			base := b.TempDir()
			i := 0
			for b.Loop() {
				i++
				if _, _, err := extractOnce(n, filepath.Join(base, fmt.Sprint(i))); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("%s/warm", n), func(b *testing.B) {
			dir := b.TempDir()
			if _, _, err := extractOnce(n, dir); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, _, err := extractOnce(n, dir); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	s := summarize([]float64{5, 1, 4, 2, 3})
	if s.N != 5 || s.Median != 3 || s.Min != 1 || s.Max != 5 {
		t.Errorf("summarize: %+v", s)
	}
	if math.Abs(s.P10-1.4) > 1e-9 || math.Abs(s.P90-4.6) > 1e-9 {
		t.Errorf("p10 %v p90 %v, want 1.4 and 4.6", s.P10, s.P90)
	}
	if s.Values[0] != 5 {
		t.Errorf("values are kept in run order: %v", s.Values)
	}
	if one := summarize([]float64{7}); one.Median != 7 || one.P10 != 7 || one.P90 != 7 {
		t.Errorf("one value: %+v", one)
	}
	if none := summarize(nil); none.N != 0 {
		t.Errorf("no value: %+v", none)
	}
	if got := summarize([]float64{1, 2, 3, 4}).Median; got != 2.5 {
		t.Errorf("median of an even count: %v", got)
	}
}

func TestSpan(t *testing.T) {
	for _, c := range []struct {
		lo, hi float64
		unit   string
		want   string
	}{
		{12, 15, "ms", "12.0–15.0 ms"},
		{900, 12000, "ms", "900 ms–12.0 s"},
		{1.5, 2.25, "MiB", "1.50–2.25 MiB"},
	} {
		if got := span(c.lo, c.hi, c.unit); got != c.want {
			t.Errorf("span(%v, %v, %s) = %q, want %q", c.lo, c.hi, c.unit, got, c.want)
		}
	}
}

func TestDescends(t *testing.T) {
	procs := map[int]proc{
		10: {Pid: 10, PPid: 1},
		20: {Pid: 20, PPid: 10},
		30: {Pid: 30, PPid: 20},
		40: {Pid: 40, PPid: 1},
	}
	if !descends(procs, 30, 10) || !descends(procs, 20, 10) {
		t.Error("30 and 20 descend from 10")
	}
	if descends(procs, 40, 10) || descends(procs, 10, 10) || descends(procs, 99, 10) {
		t.Error("40, 10 and an unknown PID do not descend from 10")
	}
}

func TestParseTiming(t *testing.T) {
	for _, c := range []struct {
		name, log string
		want      engineTiming
		err       string // a part of the error; "" = none
	}{
		{"one line", "boxlite-vmm: krun_start_enter at 1\nlibkrun-qemu: timing qemu_exec_ms=12.5 kernel_entry_ms=480.25 init_ms=2400\n",
			engineTiming{QEMUExec: 12.5, KernelEntry: 480.25, Init: 2400}, ""},
		{"the last line wins", "libkrun-qemu: timing qemu_exec_ms=1 kernel_entry_ms=2 init_ms=3\nlibkrun-qemu: timing qemu_exec_ms=4 kernel_entry_ms=5 init_ms=6",
			engineTiming{QEMUExec: 4, KernelEntry: 5, Init: 6}, ""},
		{"fields in any order, unknown ones ignored", "libkrun-qemu: timing init_ms=3 extra_ms=9 qemu_exec_ms=1 kernel_entry_ms=2\n",
			engineTiming{QEMUExec: 1, KernelEntry: 2, Init: 3}, ""},
		{"no line", "boxlite-vmm: krun_start_enter at 1\nlibkrun-qemu: the guest ended\n", engineTiming{}, "no \"libkrun-qemu: timing\" line"},
		{"a bare start: no kernel entry", "libkrun-qemu: timing qemu_exec_ms=1 init_ms=3\n", engineTiming{}, "no kernel_entry_ms"},
		{"not a number", "libkrun-qemu: timing qemu_exec_ms=x kernel_entry_ms=2 init_ms=3\n", engineTiming{}, "qemu_exec_ms"},
		{"not key=value", "libkrun-qemu: timing qemu_exec_ms=1 oops kernel_entry_ms=2 init_ms=3\n", engineTiming{}, `field "oops"`},
		{"quoted in another line", "boxlite-vmm: saw libkrun-qemu: timing qemu_exec_ms=1 kernel_entry_ms=2 init_ms=3\n", engineTiming{}, "no \"libkrun-qemu: timing\" line"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseTiming(c.log)
			switch {
			case c.err == "" && err != nil:
				t.Fatalf("error %v", err)
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Fatalf("error %v, want one with %q", err, c.err)
			case got != c.want:
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestPhaseLines(t *testing.T) {
	log := filepath.Join(t.TempDir(), "containerd.log")
	body := `time="2026-12-02T00:12:22.580661109Z" level=debug msg="boxlite phase" id=a ms=0.602 phase=spec runtime=io.containerd.boxlite.v2
time="2026-12-02T00:12:24.736900997Z" level=debug msg="boxlite phase" id=a ms=1993.866 phase=guest-ready runtime=io.containerd.boxlite.v2
time="2026-12-02T00:12:24.736900997Z" level=debug msg="boxlite phase" id=other ms=1 phase=guest-ready runtime=io.containerd.boxlite.v2
time="2026-12-02T00:12:25.000000000Z" level=info msg="sandbox booted" id=a
time="2026-12-02T00:12:25.000000000Z" level=debug msg="boxlite phase" id=a ms=9 phase=start runtime=io.containerd.boxlite.v2
time="2026-12-02T00:12:25.1Z" level=debug msg="boxlite phase" id=a ms=7.5 phase=start runtime=io.containerd.boxlite.v2
`
	if err := os.WriteFile(log, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := phaseLines(log, map[string]bool{"a": true})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || len(got["a"]) != 3 {
		t.Fatalf("phases %v, want spec, guest-ready and the last start of a only", got)
	}
	at := func(s string) time.Time { v, _ := time.Parse(time.RFC3339Nano, s); return v }
	for phase, want := range map[string]phaseLine{
		"spec":        {0.602, at("2026-12-02T00:12:22.580661109Z")},
		"guest-ready": {1993.866, at("2026-12-02T00:12:24.736900997Z")},
		"start":       {7.5, at("2026-12-02T00:12:25.1Z")},
	} {
		if g := got["a"][phase]; g.ms != want.ms || !g.at.Equal(want.at) {
			t.Errorf("%s: %+v, want %+v", phase, g, want)
		}
	}
	if _, err := phaseLines(filepath.Join(t.TempDir(), "none.log"), nil); err == nil {
		t.Error("a missing log: no error")
	}
}

func TestCombine(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	full := map[string]phaseLine{
		"vmm-spawn":   {ms: 20},
		"guest-ready": {ms: 5000, at: t0},
		"boot":        {ms: 5100, at: t0.Add(100 * time.Millisecond)},
		"start":       {ms: 30, at: t0.Add(750500 * time.Microsecond)},
	}
	tm := engineTiming{QEMUExec: 3, KernelEntry: 400, Init: 3000}
	without := func(p string) map[string]phaseLine {
		m := maps.Clone(full)
		delete(m, p)
		return m
	}
	for _, c := range []struct {
		name string
		ph   map[string]phaseLine
		tm   engineTiming
		want []float64
		err  string
	}{
		// 20+400, 3000-400, 5000-3000, start line - guest-ready line, sum.
		{"all there", full, tm, []float64{420, 2600, 2000, 750.5, 5770.5}, ""},
		// 5000 - 4487.282 is 512.7179999999998 in floating point.
		{"rounded to the microsecond", full, engineTiming{KernelEntry: 0.2, Init: 4487.282}, []float64{20.2, 4487.082, 512.718, 750.5, 5770.5}, ""},
		{"no vmm-spawn", without("vmm-spawn"), tm, nil, "no vmm-spawn phase line"},
		{"no guest-ready", without("guest-ready"), tm, nil, "no guest-ready phase line"},
		{"no start", without("start"), tm, nil, "no start phase line"},
		{"a line without its time", map[string]phaseLine{"vmm-spawn": {ms: 1}, "guest-ready": {ms: 5000}, "start": {ms: 1, at: t0}}, tm, nil, "has no time"},
		{"init after the agent's readiness", full, engineTiming{KernelEntry: 400, Init: 5001}, nil, "init to agent ready is negative"},
		{"start logged before readiness", map[string]phaseLine{"vmm-spawn": {ms: 1}, "guest-ready": {ms: 5000, at: t0}, "start": {ms: 1, at: t0.Add(-time.Millisecond)}}, tm, nil, "agent ready to container started is negative"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := combine(c.ph, c.tm)
			switch {
			case c.err == "" && err != nil:
				t.Fatalf("error %v", err)
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Fatalf("error %v, want one with %q", err, c.err)
			case !slices.Equal(got, c.want):
				t.Errorf("got %v, want %v", got, c.want)
			}
			if err == nil && len(got) != len(bootSegments) {
				t.Errorf("%d values for %d rows", len(got), len(bootSegments))
			}
		})
	}
}

func TestParseSections(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
		err  bool
	}{
		{"all", sectionNames, false},
		{"emulation", []string{"emulation"}, false},
		{" cold , emulation", []string{"cold", "emulation"}, false},
		{"emulation,all", sectionNames, false},
		{"boot", nil, true},
		{"", nil, true},
	} {
		got, err := parseSections(c.in)
		if (err != nil) != c.err {
			t.Errorf("%q: error %v, want error %v", c.in, err, c.err)
			continue
		}
		keys := slices.Sorted(maps.Keys(got))
		want := slices.Sorted(slices.Values(c.want))
		if !c.err && !slices.Equal(keys, want) {
			t.Errorf("%q: %v, want %v", c.in, keys, want)
		}
	}
}

func TestEmbeddedKernels(t *testing.T) {
	for _, c := range []struct {
		out  string
		want []string
	}{
		{"containerd-shim-boxlite-v2:\n  Version:          1.0\n  Embedded kernels: lean, net\n", []string{"lean", "net"}},
		{"  Embedded kernels: lean\n", []string{"lean"}},
		{"  Embedded kernels: none\n", nil},
		{"", nil},
	} {
		if got := slices.Sorted(maps.Keys(embeddedKernels(c.out))); !slices.Equal(got, c.want) {
			t.Errorf("%q: %v, want %v", c.out, got, c.want)
		}
	}
}

func TestLabelMarks(t *testing.T) {
	rep := &Report{Rows: []Row{
		{Figure: "emulated boot lean: kernel entry to init", Runtime: boxlite, Label: emuLabel, Unit: "ms", Summary: &Summary{N: 1, Median: 2000}},
		{Figure: "emulated boot net: kernel entry to init", Runtime: boxlite, Label: emuLabel, NotMeasured: "no QEMU"},
	}}
	var out strings.Builder
	printTable(&out, rep)
	s := out.String()
	if !strings.Contains(s, "boxlite†") || !strings.Contains(s, "† "+emuLabel) {
		t.Errorf("the emulation rows are not marked with their label:\n%s", s)
	}
	if strings.Contains(s, doubleLabel) || strings.Contains(s, "×") {
		t.Errorf("no test double row and no ratio, yet:\n%s", s)
	}
}
