package main

import (
	"bufio"
	"os"
	"sort"
	"strconv"
	"strings"
)

// startPhases are the phases the shim logs for a cold start ("boxlite
// phase" at debug level, see runtime/sandbox.Span), in order, with what each
// covers.
var startPhases = []struct{ name, what string }{
	{"spec", "bundle spec, configuration, VM request"},
	{"prepare", "kernel chosen and verified, sandbox directory, agent copied"},
	{"vmm-spawn", "VMM spawned, jailed, libkrun loaded, to krun_start_enter"},
	{"guest-ready", "krun_start_enter to the agent saying it serves"},
	{"boot", "all of the boot (the two above, agent connection, cgroups)"},
	{"create", "rootfs and mounts shared, container created in the guest"},
	{"start", "Start: the process started in the guest"},
	{"run", "the workload (/bin/true) until its exit is reported"},
	{"delete", "Delete: container and VM stopped, everything removed"},
}

// phaseSamples reads the shim's phase lines for the given task IDs from
// containerd's log and returns, per phase, the durations (ms).
func phaseSamples(logPath string, ids map[string]bool) map[string][]float64 {
	f, err := os.Open(logPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	out := map[string][]float64{}
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
		if ms, err := strconv.ParseFloat(kv["ms"], 64); err == nil {
			out[kv["phase"]] = append(out[kv["phase"]], ms)
		}
	}
	return out
}

// logfmt parses the key=value pairs of a logrus text line (values may be
// double-quoted; containerd may quote the whole shim line too).
func logfmt(line string) map[string]string {
	line = strings.ReplaceAll(line, `\"`, `"`)
	kv := map[string]string{}
	for i := 0; i < len(line); {
		eq := strings.IndexByte(line[i:], '=')
		if eq < 0 {
			break
		}
		start := strings.LastIndexAny(line[:i+eq], " \t") + 1
		key := line[start : i+eq]
		j := i + eq + 1
		var val string
		if j < len(line) && line[j] == '"' {
			end := strings.IndexByte(line[j+1:], '"')
			if end < 0 {
				break
			}
			val, j = line[j+1:j+1+end], j+2+end
		} else {
			end := strings.IndexAny(line[j:], " \t")
			if end < 0 {
				end = len(line) - j
			}
			val, j = line[j:j+end], j+end
		}
		kv[key] = val
		i = j
	}
	return kv
}

// phaseRows are the bench's rows for the phases of boxlite's cold starts.
func (b *bench) phaseRows(ids map[string]bool) {
	samples := phaseSamples(b.d.Log, ids)
	for _, p := range startPhases {
		s := summarize(samples[p.name])
		r := Row{Figure: "cold start phase: " + p.name, Runtime: boxlite, Unit: "ms", Summary: &s, Note: p.what}
		if s.N == 0 {
			r.Summary = nil
			r.NotMeasured = "no phase line in containerd's log (is it at debug level?)"
		}
		b.add(r)
	}
	var names []string
	for n := range samples {
		names = append(names, n)
	}
	sort.Strings(names)
	b.logf("phases logged by the shim: %v", names)
}
