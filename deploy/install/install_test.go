package install

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// The binaries install.sh places, each with a distinct fake content.
var binaries = []string{"containerd-shim-boxlite-v2", "boxlite-vmm", "boxlite-agent"}

const importLine = `imports = ["/etc/containerd/conf.d/*.toml"]`

// fakeBin is a --bin directory with fake binaries (mode 0644: install.sh must
// make them executable).
func fakeBin(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, b := range binaries {
		if err := os.WriteFile(filepath.Join(dir, b), []byte("#!/bin/sh\necho "+b+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// toolbox is a PATH directory holding only the tools install.sh uses, so that
// tests control whether systemctl and nsenter exist. extra maps a name to a
// script body standing in for that tool.
func toolbox(t *testing.T, extra map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for _, tool := range []string{"sh", "awk", "base64", "basename", "cat", "chmod", "cmp", "cp", "cut", "dirname", "grep", "mkdir", "mv", "rm", "rmdir", "sed", "sha256sum", "sort", "stat", "tr", "wc"} {
		if _, ok := extra[tool]; ok {
			continue
		}
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
		if err := os.Symlink(p, filepath.Join(dir, tool)); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range extra {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// shell runs install.sh; TestInstallUninstall also runs it under the other
// shells present (the DaemonSet image's /bin/sh may be any of them).
var shell = "/bin/sh"

func otherShells() []string {
	var out []string
	for _, sh := range []string{"bash", "busybox"} {
		if p, err := exec.LookPath(sh); err == nil {
			out = append(out, p)
		}
	}
	return out
}

type result struct {
	code           int
	stdout, stderr string
}

// run runs install.sh with args under /bin/sh with PATH set to path ("" = a
// toolbox without systemctl and nsenter).
func run(t *testing.T, path string, args ...string) result {
	t.Helper()
	return runScript(t, filepath.Join(deployDir(t), "install", "install.sh"), path, args...)
}

// runScript is run with the install.sh at script (e.g. one in an unpacked
// release).
func runScript(t *testing.T, script, path string, args ...string) result {
	t.Helper()
	return runIn(t, "", script, path, args...)
}

// runIn is runScript in the working directory dir ("" = the test's), where
// script may be a relative path.
func runIn(t *testing.T, dir, script, path string, args ...string) result {
	t.Helper()
	if path == "" {
		path = toolbox(t, nil)
	}
	// Read it here too: go test's cache then knows the result depends on it.
	if _, err := os.ReadFile(filepath.Join(dir, script)); err != nil {
		t.Fatal(err)
	}
	shArgs := append([]string{script}, args...)
	if filepath.Base(shell) == "busybox" {
		shArgs = append([]string{"sh"}, shArgs...)
	}
	cmd := exec.Command(shell, shArgs...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + path, "LC_ALL=C"}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("install.sh %v: %v", args, err)
	}
	return r
}

func mustRun(t *testing.T, args ...string) result {
	t.Helper()
	r := run(t, "", args...)
	if r.code != 0 {
		t.Fatalf("install.sh %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, r.code, r.stdout, r.stderr)
	}
	return r
}

// tree lists every entry under root with its type, mode and content hash.
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		desc := info.Mode().String()
		switch {
		case info.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			desc += " " + hex.EncodeToString(sum[:])
		case info.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			desc += " -> " + target
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffTrees(a, b map[string]string) string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var d strings.Builder
	for _, k := range keys {
		if a[k] != b[k] {
			fmt.Fprintf(&d, "  %s: %q -> %q\n", k, a[k], b[k])
		}
	}
	return d.String()
}

// scratchRoot is a fresh --root holding files (path relative to the root ->
// content; mode 0644, directories 0755).
func scratchRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for rel, content := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const operatorConfig = `# operator's containerd config: keep me
version = 3
root = "/var/lib/containerd"

[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
`

func countImports(s string) int {
	return strings.Count(s, `"/etc/containerd/conf.d/*.toml"`) + strings.Count(s, `"conf.d/*.toml"`)
}

func TestInstallUninstall(t *testing.T) {
	testInstallUninstall(t)
	for _, sh := range otherShells() {
		t.Run(filepath.Base(sh), func(t *testing.T) {
			old := shell
			shell = sh
			t.Cleanup(func() { shell = old })
			testInstallUninstall(t)
		})
	}
}

func testInstallUninstall(t *testing.T) {
	for _, c := range []struct {
		name string
		// config is the operator's etc/containerd/config.toml; "" = none.
		config string
		// wantConfig is config.toml after install.
		wantConfig string
	}{
		{
			name:       "no containerd config",
			wantConfig: "version = 3\n" + importLine + "\n",
		},
		{
			name:       "operator config without imports",
			config:     operatorConfig,
			wantConfig: strings.Replace(operatorConfig, "version = 3\n", "version = 3\n"+importLine+" # added by boxlite install.sh\n", 1),
		},
		{
			name:       "operator config without version",
			config:     "root = \"/srv/containerd\"\n",
			wantConfig: importLine + " # added by boxlite install.sh\nroot = \"/srv/containerd\"\n",
		},
		{
			name:       "operator config with other imports",
			config:     "version = 3\nimports = [\"/etc/containerd/site.toml\"] # mine\n[debug]\n  level = \"info\"\n",
			wantConfig: "version = 3\nimports = [\"/etc/containerd/site.toml\", \"/etc/containerd/conf.d/*.toml\"] # mine # added by boxlite install.sh\n[debug]\n  level = \"info\"\n",
		},
		{
			name:       "operator config with empty imports",
			config:     "version = 3\nimports = []\n",
			wantConfig: "version = 3\nimports = [\"/etc/containerd/conf.d/*.toml\"] # added by boxlite install.sh\n",
		},
		{
			name:       "operator config already importing conf.d",
			config:     "version = 3\nimports = [\n  \"/etc/containerd/conf.d/*.toml\",\n]\n",
			wantConfig: "version = 3\nimports = [\n  \"/etc/containerd/conf.d/*.toml\",\n]\n",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			files := map[string]string{"etc/hostname": "node1\n"}
			if c.config != "" {
				files["etc/containerd/config.toml"] = c.config
			}
			root := scratchRoot(t, files)
			bin := fakeBin(t)
			before := tree(t, root)

			mustRun(t, "install", "--root", root, "--bin", bin)
			installed := tree(t, root)
			checkInstalled(t, root, bin)
			got := readFile(t, filepath.Join(root, "etc/containerd/config.toml"))
			if c.name == "no containerd config" {
				// The created file starts with comments; its settings are these.
				var settings []string
				for _, l := range strings.Split(got, "\n") {
					if l != "" && !strings.HasPrefix(l, "#") {
						settings = append(settings, l)
					}
				}
				got = strings.Join(settings, "\n") + "\n"
			}
			if got != c.wantConfig {
				t.Errorf("config.toml after install:\n%s\nwant:\n%s", got, c.wantConfig)
			}
			if n := countImports(got); n != 1 {
				t.Errorf("config.toml imports conf.d %d times, want once:\n%s", n, got)
			}

			// A second install changes nothing.
			mustRun(t, "install", "--root", root, "--bin", bin)
			if d := diffTrees(installed, tree(t, root)); d != "" {
				t.Errorf("second install changed the root:\n%s", d)
			}

			// Uninstall restores the root exactly; a second one is harmless.
			mustRun(t, "uninstall", "--root", root)
			if d := diffTrees(before, tree(t, root)); d != "" {
				t.Errorf("after uninstall the root differs from before install:\n%s", d)
			}
			r := mustRun(t, "uninstall", "--root", root)
			if !strings.Contains(r.stdout, "nothing to uninstall") {
				t.Errorf("second uninstall said %q", r.stdout)
			}
			if d := diffTrees(before, tree(t, root)); d != "" {
				t.Errorf("second uninstall changed the root:\n%s", d)
			}
		})
	}
}

// checkInstalled checks the files install placed and their modes.
func checkInstalled(t *testing.T, root, bin string) {
	t.Helper()
	want := map[string]struct {
		src  string
		mode fs.FileMode
	}{
		"etc/boxlite/config.toml":            {filepath.Join(deployDir(t), "boxlite", "config.toml"), 0o644},
		"etc/boxlite/config-net.toml":        {filepath.Join(deployDir(t), "boxlite", "config-net.toml"), 0o644},
		"etc/containerd/conf.d/boxlite.toml": {filepath.Join(deployDir(t), "containerd", "boxlite.toml"), 0o644},
		"var/lib/boxlite/install.manifest":   {"", 0o644},
	}
	for _, b := range binaries {
		want["usr/local/bin/"+b] = struct {
			src  string
			mode fs.FileMode
		}{filepath.Join(bin, b), 0o755}
	}
	for rel, w := range want {
		p := filepath.Join(root, rel)
		st, err := os.Stat(p)
		if err != nil {
			t.Errorf("%s not installed: %v", rel, err)
			continue
		}
		if st.Mode() != w.mode {
			t.Errorf("%s: mode %v, want %v", rel, st.Mode(), w.mode)
		}
		if w.src != "" && readFile(t, p) != readFile(t, w.src) {
			t.Errorf("%s differs from %s", rel, w.src)
		}
	}
}

// TestOperatorFilesKept: files install did not place, and files it placed
// that were changed since, are never overwritten or removed.
func TestOperatorFilesKept(t *testing.T) {
	const mine = "# operator's own shim config\n[kernel]\ndefault = \"net\"\n"
	root := scratchRoot(t, map[string]string{
		"etc/boxlite/config.toml":          mine,
		"usr/local/bin/boxlite-agent":      "operator's agent\n",
		"etc/containerd/conf.d/other.toml": "version = 3\n",
	})
	bin := fakeBin(t)
	before := tree(t, root)

	r := mustRun(t, "install", "--root", root, "--bin", bin)
	for _, rel := range []string{"etc/boxlite/config.toml", "usr/local/bin/boxlite-agent"} {
		if !strings.Contains(r.stdout, "/"+rel+": present and not installed by this script") {
			t.Errorf("install did not say it kept /%s:\n%s", rel, r.stdout)
		}
	}
	if got := readFile(t, filepath.Join(root, "etc/boxlite/config.toml")); got != mine {
		t.Errorf("operator's config.toml overwritten:\n%s", got)
	}
	// Changed after install: kept by a re-install and by uninstall.
	netCfg := filepath.Join(root, "etc/boxlite/config-net.toml")
	edited := readFile(t, netCfg) + "# tuned by the operator\n"
	if err := os.WriteFile(netCfg, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	r = mustRun(t, "install", "--root", root, "--bin", bin)
	if !strings.Contains(r.stdout, "/etc/boxlite/config-net.toml: changed since install") {
		t.Errorf("re-install did not say it kept the edited file:\n%s", r.stdout)
	}
	r = mustRun(t, "uninstall", "--root", root)
	if !strings.Contains(r.stdout, "config-net.toml: changed since install: left in place") {
		t.Errorf("uninstall did not say it kept the edited file:\n%s", r.stdout)
	}
	if got := readFile(t, netCfg); got != edited {
		t.Errorf("edited config-net.toml changed by uninstall")
	}
	if err := os.Remove(netCfg); err != nil {
		t.Fatal(err)
	}
	if d := diffTrees(before, tree(t, root)); d != "" {
		t.Errorf("after uninstall (less the edited file) the root differs from before install:\n%s", d)
	}
}

// TestUpgrade: a new build of a binary replaces the one install placed.
func TestUpgrade(t *testing.T) {
	root := scratchRoot(t, nil)
	bin := fakeBin(t)
	before := tree(t, root)
	mustRun(t, "install", "--root", root, "--bin", bin)
	if err := os.WriteFile(filepath.Join(bin, "boxlite-vmm"), []byte("new vmm\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "install", "--root", root, "--bin", bin)
	if got := readFile(t, filepath.Join(root, "usr/local/bin/boxlite-vmm")); got != "new vmm\n" {
		t.Errorf("boxlite-vmm not upgraded: %q", got)
	}
	mustRun(t, "uninstall", "--root", root)
	if d := diffTrees(before, tree(t, root)); d != "" {
		t.Errorf("after uninstall the root differs from before install:\n%s", d)
	}
}

func TestBadInput(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	partialBin := fakeBin(t)
	if err := os.Remove(filepath.Join(partialBin, "boxlite-vmm")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		config string // operator's config.toml, if any
		args   func(root, bin string) []string
		code   int
		msg    string
	}{
		{"missing bin dir", "", func(root, _ string) []string { return []string{"install", "--root", root, "--bin", missing} }, 1, "--bin " + missing + " is not a directory"},
		{"binary missing from bin dir", "", func(root, _ string) []string { return []string{"install", "--root", root, "--bin", partialBin} }, 1, "boxlite-vmm is missing"},
		{"unknown subcommand", "", func(root, bin string) []string { return []string{"instal", "--root", root, "--bin", bin} }, 2, "unknown subcommand 'instal'"},
		{"no subcommand", "", func(root, bin string) []string { return []string{"--root", root, "--bin", bin} }, 2, "no subcommand"},
		{"unknown option", "", func(root, bin string) []string { return []string{"install", "--root", root, "--force"} }, 2, "unknown option '--force'"},
		{"two subcommands", "", func(root, bin string) []string { return []string{"install", "uninstall", "--root", root} }, 2, "more than one subcommand"},
		{"--root without value", "", func(root, bin string) []string { return []string{"install", "--bin", bin, "--root"} }, 2, "--root needs a directory"},
		{"missing root", "", func(root, bin string) []string { return []string{"install", "--root", missing, "--bin", bin} }, 1, "--root " + missing + " is not a directory"},
		{"install path blocked by a file", "", func(root, bin string) []string {
			if err := os.WriteFile(filepath.Join(root, "etc", "boxlite"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			return []string{"install", "--root", root, "--bin", bin}
		}, 1, "etc/boxlite is not a directory"},
		{"multi-line imports without conf.d", "version = 3\nimports = [\n  \"/etc/x.toml\",\n]\n", func(root, bin string) []string { return []string{"install", "--root", root, "--bin", bin} }, 1, "cannot extend safely"},
	} {
		t.Run(c.name, func(t *testing.T) {
			files := map[string]string{}
			if c.config != "" {
				files["etc/containerd/config.toml"] = c.config
			}
			files["etc/hostname"] = "node1\n"
			root := scratchRoot(t, files)
			args := c.args(root, fakeBin(t))
			before := tree(t, root)
			r := run(t, "", args...)
			if r.code != c.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, c.code, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stderr, c.msg) || !strings.Contains(r.stderr, "error:") {
				t.Errorf("stderr %q does not say %q", r.stderr, c.msg)
			}
			if d := diffTrees(before, tree(t, root)); d != "" {
				t.Errorf("a failed run wrote into the root:\n%s", d)
			}
		})
	}
}

func TestRestart(t *testing.T) {
	for _, c := range []struct {
		name  string
		tools map[string]string
		flag  bool
		// want is what the fake tools recorded ("" = nothing ran).
		want, msg string
	}{
		{"no --restart", map[string]string{"nsenter": `echo "nsenter $*" >>"$LOG"`}, false, "", "containerd was not restarted"},
		{"--restart through nsenter", map[string]string{"nsenter": `echo "nsenter $*" >>"$LOG"`}, true, "nsenter --target 1 --mount -- systemctl restart containerd\n", "restarting containerd on the host"},
		{"--restart without nsenter", nil, true, "", "restart containerd on the node yourself"},
	} {
		t.Run(c.name, func(t *testing.T) {
			log := filepath.Join(t.TempDir(), "log")
			tools := map[string]string{}
			for k, v := range c.tools {
				tools[k] = strings.ReplaceAll(v, "$LOG", log)
			}
			path := toolbox(t, tools)
			root := scratchRoot(t, nil)
			args := []string{"install", "--root", root, "--bin", fakeBin(t)}
			if c.flag {
				args = append(args, "--restart")
			}
			r := run(t, path, args...)
			if r.code != 0 || !strings.Contains(r.stdout, c.msg) {
				t.Errorf("exit %d, stdout %q, want it to say %q (stderr %q)", r.code, r.stdout, c.msg, r.stderr)
			}
			got, _ := os.ReadFile(log)
			if string(got) != c.want {
				t.Errorf("install: tools ran %q, want %q", got, c.want)
			}
			// uninstall restarts the same way.
			uargs := []string{"uninstall", "--root", root}
			if c.flag {
				uargs = append(uargs, "--restart")
			}
			if r := run(t, path, uargs...); r.code != 0 || !strings.Contains(r.stdout, c.msg) {
				t.Errorf("uninstall: exit %d, stdout %q, want it to say %q (stderr %q)", r.code, r.stdout, c.msg, r.stderr)
			}
			got, _ = os.ReadFile(log)
			if string(got) != c.want+c.want {
				t.Errorf("install and uninstall: tools ran %q, want %q", got, c.want+c.want)
			}
		})
	}
}

// TestFailedInstallUndone: an install that fails part way (here: copying one
// binary fails) exits non-zero and leaves a manifest from which uninstall
// restores the root exactly.
func TestFailedInstallUndone(t *testing.T) {
	cp, err := exec.LookPath("cp")
	if err != nil {
		t.Fatal(err)
	}
	failingCp := `case "$1" in *boxlite-agent) echo "cp: disk full" >&2; exit 1;; esac
exec ` + cp + ` "$@"
`
	for _, previous := range []bool{false, true} {
		t.Run(fmt.Sprintf("previous install %v", previous), func(t *testing.T) {
			root := scratchRoot(t, map[string]string{"etc/containerd/config.toml": operatorConfig})
			bin := fakeBin(t)
			before := tree(t, root)
			if previous {
				mustRun(t, "install", "--root", root, "--bin", bin)
				// A new build of the agent: the upgrade fails copying it.
				if err := os.WriteFile(filepath.Join(bin, "boxlite-agent"), []byte("new agent\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			r := run(t, toolbox(t, map[string]string{"cp": failingCp}), "install", "--root", root, "--bin", bin)
			if r.code == 0 || !strings.Contains(r.stderr, "install failed part way") {
				t.Fatalf("exit %d, stderr %q: want a failure that says so", r.code, r.stderr)
			}
			mustRun(t, "uninstall", "--root", root)
			if d := diffTrees(before, tree(t, root)); d != "" {
				t.Errorf("after uninstall the root differs from before install:\n%s", d)
			}
		})
	}
}
