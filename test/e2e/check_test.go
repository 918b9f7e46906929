package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/boxlite/boxlite-shim/test/ctrd"
)

// TestCheckCommand runs the node preflight of the binary `make test` builds
// against each libkrun this host can offer: none (the loader finds no
// libkrun.so.1 here), the libkrun test double, and a library that is not
// libkrun. No case may pass: this host has no real libkrun. Each must say
// what is missing and how to get it, and the probe must leave nothing behind.
func TestCheckCommand(t *testing.T) {
	bin := shimBinary(t)
	double := filepath.Join(ctrd.BinDir(t), "test", "libkrun.so.1")
	ctrd.Require(t, double)
	notLibkrun := filepath.Join(ctrd.Deps(), "kernels", "lean", "libkrunfw.so.5")
	ctrd.Require(t, notLibkrun)

	cases := []struct {
		name    string
		libkrun string
		want    map[string]string // check name → regexp its line must match
	}{
		{"absent", "", map[string]string{
			"libkrun": `^\[FAIL\] +libkrun +libkrun\.so\.1 cannot be loaded: .*\n +-> install libkrun 1\.18\.1 or newer`,
			"boot":    `^\[skip\] +boot +needs a usable libkrun \(see the libkrun line\)`,
		}},
		{"test-double", double, map[string]string{
			"libkrun": `^\[warn\] +libkrun +\S+ is the boxlite libkrun test double \(tests only\).*boots no VM; it stands for libkrun >= \d+\.\d+\.\d+ .*\n +-> point libkrun_path`,
			"boot":    `^\[FAIL\] +boot +no guest booted: the libkrun test double ran the agent as a host process.*\n +-> run check with a real libkrun`,
		}},
		{"not-libkrun", notLibkrun, map[string]string{
			"libkrun": `^\[FAIL\] +libkrun +\S+libkrunfw\.so\.5 is not libkrun: .*\n +-> point libkrun_path`,
			"boot":    `^\[skip\] +boot +needs a usable libkrun \(see the libkrun line\)`,
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "config.toml")
			body := `cache_dir = "` + filepath.Join(dir, "cache") + `"` + "\n"
			if tc.libkrun != "" {
				body += `libkrun_path = "` + tc.libkrun + `"` + "\n"
			}
			if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(bin, "check", "-config", cfg).Output()
			t.Logf("\n%s", out)
			if code := ctrd.ExitCode(err); code != 1 {
				t.Errorf("exit code %d, want 1: no check may pass without a real libkrun", code)
			}
			for name, re := range tc.want {
				line := checkLine(string(out), name)
				if !regexp.MustCompile(re).MatchString(line) {
					t.Errorf("%s line:\n%s\nwant it to match %s", name, line, re)
				}
			}
			for _, name := range []string{"kernel lean", "kernel net", "pod network"} {
				if line := checkLine(string(out), name); !strings.HasPrefix(line, "[ok]") {
					t.Errorf("%s: %s", name, line)
				}
			}
			for _, p := range ctrd.OurProcesses() {
				if cmdline, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.Pid), "cmdline")); strings.Contains(string(cmdline), "boxlite-check-") {
					t.Errorf("check left its probe VMM behind: %+v", p)
				}
			}
			if left, _ := filepath.Glob(filepath.Join(os.TempDir(), "boxlite-check-*")); len(left) > 0 {
				t.Errorf("check left its probe directory behind: %v", left)
			}
		})
	}
}

// checkLine is the report line of the named check with its "->" fix line.
func checkLine(out, name string) string {
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		f := strings.Fields(strings.TrimPrefix(l, "["))
		if len(f) < 2 || !strings.HasPrefix(l, "[") {
			continue
		}
		got := f[1]
		if (f[1] == "kernel" || f[1] == "pod") && len(f) > 2 {
			got += " " + f[2]
		}
		if got != name {
			continue
		}
		if i+1 < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[i+1]), "->") {
			return l + "\n" + lines[i+1]
		}
		return l
	}
	return ""
}
