package release

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/boxlite/boxlite-shim/test/crid"
	"github.com/boxlite/boxlite-shim/test/ctrd"
)

// releaseFiles are the files of an unpacked release, with their modes.
var releaseFiles = map[string]fs.FileMode{
	"INSTALL":                               0o644,
	"SHA256SUMS":                            0o644,
	"VERSION":                               0o644,
	"bin/boxlite-agent":                     0o755,
	"bin/boxlite-vmm":                       0o755,
	"bin/containerd-shim-boxlite-v2":        0o755,
	"deploy/boxlite/config-net.toml":        0o644,
	"deploy/boxlite/config.toml":            0o644,
	"deploy/containerd/boxlite.toml":        0o644,
	"deploy/install/install.sh":             0o755,
	"deploy/kubernetes/Dockerfile":          0o644,
	"deploy/kubernetes/boxlite-deploy.yaml": 0o644,
	"deploy/kubernetes/runtimeclasses.yaml": 0o644,
}

// The installed files the test changes to run pods here, and restores
// before uninstall (uninstall leaves a file that changed since install).
const (
	leanConfig = "etc/boxlite/config.toml"
	netConfig  = "etc/boxlite/config-net.toml"
	dropIn     = "etc/containerd/conf.d/boxlite.toml"
)

func TestRelease(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("installing and running containerd need root: this test runs as uid", os.Geteuid())
	}
	repo := ctrd.RepoRoot(t)
	deps := ctrd.Deps()
	kernels := map[string]string{} // variant -> SHA-256 of the deps cache's libkrunfw.so.5
	for _, k := range []string{"lean", "net"} {
		p := filepath.Join(deps, "kernels", k, "libkrunfw.so.5")
		ctrd.Require(t, p)
		kernels[k] = sha256File(t, p)
	}
	ctrd.Require(t, filepath.Join(deps, "bin", "containerd"), filepath.Join(deps, "bin", "crictl"))
	scratch, err := os.MkdirTemp("", "bxr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, m := range ctrd.MountsUnder(scratch) {
			t.Errorf("mount left under the scratch directory: %s", m)
			_ = exec.Command("umount", "-l", m).Run()
		}
		if err := os.RemoveAll(scratch); err != nil {
			t.Errorf("remove %s: %v", scratch, err)
		}
	})

	// make release, twice: the same commit gives the same bytes. The
	// second run is from a fresh clone at the same commit (another path,
	// a clone rather than maybe a worktree), unless the tree has changes a
	// clone would not have: then from the same checkout.
	version := strings.TrimSpace(string(mustOutput(t, repo, "sh", "deploy/release/version.sh")))
	name := "boxlite-shim-" + version + "-linux-amd64"
	checkouts := []string{repo, repo}
	if !strings.HasSuffix(version, "-dirty") {
		clone := filepath.Join(scratch, "clone")
		head := strings.TrimSpace(string(mustOutput(t, repo, "git", "rev-parse", "HEAD")))
		mustOutput(t, scratch, "git", "clone", "-q", "--no-checkout", repo, clone)
		mustOutput(t, clone, "git", "checkout", "-q", "--detach", head)
		checkouts[1] = clone
	} else {
		t.Logf("the checkout has uncommitted changes (%s): both make release runs are from it", version)
	}
	var tarballs [2][]byte
	for i, checkout := range checkouts {
		dist := filepath.Join(scratch, fmt.Sprintf("dist%d", i+1))
		start := time.Now()
		makeRelease(t, checkout, dist)
		t.Logf("make release (run %d, in %s): %v", i+1, checkout, time.Since(start).Round(100*time.Millisecond))
		var got []string
		ents, _ := os.ReadDir(dist)
		for _, e := range ents {
			got = append(got, e.Name())
		}
		if want := []string{name + ".tar.gz", name + ".tar.gz.sha256"}; strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("make release wrote %v into its dist directory, want %v", got, want)
		}
		tarballs[i] = readFile(t, filepath.Join(dist, name+".tar.gz"))
		// The .sha256 checks, as an operator checks it.
		if out := mustOutput(t, dist, "sha256sum", "-c", name+".tar.gz.sha256"); !strings.Contains(string(out), name+".tar.gz: OK") {
			t.Errorf("sha256sum -c %s.tar.gz.sha256: %s", name, out)
		}
	}
	t.Logf("tarball %s.tar.gz: %.1f MB", name, float64(len(tarballs[0]))/1e6)
	if !bytes.Equal(tarballs[0], tarballs[1]) {
		t.Errorf("two make release runs from one commit (%v) gave different tarballs (%d and %d bytes)", checkouts, len(tarballs[0]), len(tarballs[1]))
	}

	// Unpack, as an operator does, and check what is there.
	unpacked := filepath.Join(scratch, "unpacked")
	if err := os.Mkdir(unpacked, 0o755); err != nil {
		t.Fatal(err)
	}
	mustOutput(t, unpacked, "tar", "-xzf", filepath.Join(scratch, "dist1", name+".tar.gz"))
	top := filepath.Join(unpacked, name)
	if ents, _ := os.ReadDir(unpacked); len(ents) != 1 || ents[0].Name() != name {
		t.Fatalf("the tarball does not unpack into the one directory %s", name)
	}
	checkLayout(t, top)
	if out := mustOutput(t, top, "sha256sum", "--strict", "-c", "SHA256SUMS"); strings.Count(string(out), ": OK\n") != len(releaseFiles)-1 {
		t.Errorf("sha256sum -c SHA256SUMS checked other than the %d files:\n%s", len(releaseFiles)-1, out)
	}
	checkVersion(t, top, version, kernels)

	// Install from the release, with its own install.sh and no --bin.
	root := filepath.Join(scratch, "root")
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "hostname"), []byte("node1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := tree(t, root)
	out := mustOutput(t, top, "./deploy/install/install.sh", "install", "--root", root)
	if want := fmt.Sprintf("release %s: %d files match SHA256SUMS", version, len(releaseFiles)-1); !strings.Contains(string(out), want) {
		t.Errorf("install did not say %q:\n%s", want, out)
	}
	for rel, src := range map[string]string{
		"usr/local/bin/containerd-shim-boxlite-v2": "bin/containerd-shim-boxlite-v2",
		"usr/local/bin/boxlite-vmm":                "bin/boxlite-vmm",
		"usr/local/bin/boxlite-agent":              "bin/boxlite-agent",
		leanConfig:                                 "deploy/boxlite/config.toml",
		netConfig:                                  "deploy/boxlite/config-net.toml",
		dropIn:                                     "deploy/containerd/boxlite.toml",
	} {
		if !bytes.Equal(readFile(t, filepath.Join(root, rel)), readFile(t, filepath.Join(top, src))) {
			t.Errorf("installed /%s is not the release's %s", rel, src)
		}
	}
	if cfg := string(readFile(t, filepath.Join(root, "etc/containerd/config.toml"))); !strings.Contains(cfg, `imports = ["/etc/containerd/conf.d/*.toml"]`) {
		t.Errorf("the installed containerd config does not import conf.d:\n%s", cfg)
	}

	// Tests only: the installed drop-in names its shim configs by their
	// node paths (/etc/boxlite/...), which here are under the scratch root;
	// and the installed shim configs get the libkrun test double
	// (libkrun_path = bin/test/libkrun.so.1: no guest boots here) and the
	// env's state and cache directories. Each file is restored before
	// uninstall.
	originals := map[string][]byte{}
	for _, rel := range []string{dropIn, leanConfig, netConfig} {
		originals[rel] = readFile(t, filepath.Join(root, rel))
	}
	edit(t, root, dropIn, map[string]string{
		`"/etc/boxlite/config.toml"`:     fmt.Sprintf("%q", filepath.Join(root, leanConfig)),
		`"/etc/boxlite/config-net.toml"`: fmt.Sprintf("%q", filepath.Join(root, netConfig)),
	})
	bin := filepath.Join(root, "usr", "local", "bin")
	e := crid.New(t, crid.Options{Imports: []string{filepath.Join(root, "etc", "containerd", "conf.d", "*.toml")}, BinDir: bin})
	t.Logf("tests only: libkrun_path = %s in the installed /%s and /%s", e.Double, leanConfig, netConfig)
	for _, rel := range []string{leanConfig, netConfig} {
		edit(t, root, rel, map[string]string{
			`libkrun_path = ""`:                    fmt.Sprintf("libkrun_path = %q", e.Double),
			`state_dir = "/run/boxlite"`:           fmt.Sprintf("state_dir = %q", e.StateDir),
			`cache_dir = "/var/lib/boxlite/cache"`: fmt.Sprintf("cache_dir = %q", e.CacheDir),
		})
	}
	checkHandlers(t, e, root)

	// The installed shim embeds both kernels.
	shas := kernelsReport(t, filepath.Join(bin, "containerd-shim-boxlite-v2"), filepath.Join(root, leanConfig))
	for k, sum := range kernels {
		if shas[k] == "" || !strings.HasPrefix(sum, shas[k]) {
			t.Errorf("the installed shim's kernel %s: %q, want embedded %s", k, shas[k], sum)
		}
	}

	for _, h := range []struct{ handler, kernel, other string }{
		{"boxlite", "lean", "net"},
		{"boxlite-net", "net", "lean"},
	} {
		t.Run(h.handler, func(t *testing.T) {
			runPod(t, e, top, bin, h.handler, kernels[h.kernel], kernels[h.other], h.kernel)
		})
	}
	// Every pod gone, nothing of this env left (processes, mounts,
	// sockets, sandbox state, cgroups).
	e.AssertClean(t)

	// Restore what the test changed, then uninstall with the release's
	// install.sh: the root is as it was.
	for rel, b := range originals {
		if err := os.WriteFile(filepath.Join(root, rel), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out = mustOutput(t, top, "./deploy/install/install.sh", "uninstall", "--root", root)
	if strings.Contains(string(out), "left in place") {
		t.Errorf("uninstall left files in place:\n%s", out)
	}
	if d := diffTrees(before, tree(t, root)); d != "" {
		t.Errorf("after uninstall the root differs from before install:\n%s", d)
	}
	for _, p := range ctrd.OurProcesses() {
		if strings.HasPrefix(p.Exe, root+"/") || strings.HasPrefix(p.Exe, top+"/") {
			t.Errorf("process %d of the release still runs: %s", p.Pid, p.Exe)
		}
	}
	for _, d := range []string{root, top} {
		if m := ctrd.MountsUnder(d); len(m) > 0 {
			t.Errorf("mounts left under %s: %v", d, m)
		}
	}
}

// runPod runs a pod with handler, whose VMM must map the kernel with SHA-256
// want (not other), and in it a busybox container that echoes a line, read
// back with crictl logs; then removes the pod. The shim, VMM and agent
// running are the release's.
func runPod(t *testing.T, e *crid.Env, top, bin, handler, want, other, variant string) {
	podCfg := e.JSONFile(t, handler+"-pod.json", e.PodConfig(handler, nil, nil))
	pod := e.Must(t, "runp", "--runtime", handler, podCfg)
	t.Cleanup(func() {
		if err := e.RemovePod(context.Background(), pod); err != nil {
			t.Errorf("remove pod: %v", err)
		}
	})
	rec := e.Record(t, pod)
	switch got := crid.MappedKernel(t, rec.VMMPid); got {
	case want:
	case other:
		t.Errorf("pod %s: the VMM maps the other kernel (%s), want %s", handler, got, variant)
	default:
		t.Errorf("pod %s: the VMM maps kernel %s, want %s (%s)", handler, got, variant, want)
	}
	// The processes are the release's binaries (the shim from the root's
	// /usr/local/bin, the VMM and agent beside it).
	if got, w := exeSHA(t, rec.VMMPid), sha256File(t, filepath.Join(top, "bin", "boxlite-vmm")); got != w {
		t.Errorf("the VMM runs %s, not the release's boxlite-vmm (%s)", got, w)
	}
	if a := ctrd.AgentOf(rec.VMMPid); a == 0 {
		t.Errorf("no agent in the VMM's process group %d", rec.VMMPid)
	} else if got, w := exeSHA(t, a), sha256File(t, filepath.Join(top, "bin", "boxlite-agent")); got != w {
		t.Errorf("the agent runs %s, not the release's boxlite-agent (%s)", got, w)
	}
	shims := 0
	for _, p := range ctrd.OurProcesses() {
		if filepath.Base(p.Exe) != "containerd-shim-boxlite-v2" {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.Pid))
		if !bytes.Contains(cmdline, []byte("\x00"+e.D.Address+"\x00")) {
			continue
		}
		shims++
		if p.Exe != filepath.Join(bin, "containerd-shim-boxlite-v2") {
			t.Errorf("shim %d runs %s, want the installed %s", p.Pid, p.Exe, filepath.Join(bin, "containerd-shim-boxlite-v2"))
		}
	}
	if shims == 0 {
		t.Error("no shim of this containerd runs")
	}

	line := "hello from a " + handler + " pod"
	ctr := e.Must(t, "create", pod, e.JSONFile(t, handler+"-ctr.json", crid.ContainerConfig("echo", nil, "echo", line)), podCfg)
	e.Must(t, "start", ctr)
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := e.Crictl(t, "logs", ctr)
		if err == nil && strings.Contains(out, line) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("crictl logs %s: %v %q, want %q", ctr, err, out, line)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// makeRelease runs make release into dist, as a developer does (none of the
// calling make's flags).
func makeRelease(t *testing.T, repo, dist string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", "release", "DIST="+dist)
	cmd.Dir = repo
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" && k != "MAKEOVERRIDES" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make release DIST=%s: %v\n%s", dist, err, out)
	}
}

// checkLayout checks that the release holds exactly releaseFiles and their
// directories, with those modes: nothing only the tests use.
func checkLayout(t *testing.T, top string) {
	t.Helper()
	got := map[string]fs.FileMode{}
	err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(top, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if info.Mode().Perm() != 0o755 {
				t.Errorf("directory %s: mode %v, want 0755", rel, info.Mode().Perm())
			}
		case info.Mode().IsRegular():
			got[rel] = info.Mode().Perm()
		default:
			t.Errorf("%s: %v, want a regular file or directory", rel, info.Mode().Type())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for rel, mode := range releaseFiles {
		if m, ok := got[rel]; !ok {
			t.Errorf("the release lacks %s", rel)
		} else if m != mode {
			t.Errorf("%s: mode %v, want %v", rel, m, mode)
		}
	}
	for rel := range got {
		if _, ok := releaseFiles[rel]; !ok {
			t.Errorf("the release carries %s, which is not part of it", rel)
		}
		if strings.Contains(rel, "libkrun") || strings.Contains(rel, "vmmworkload") || strings.HasSuffix(rel, "_test.go") || strings.HasPrefix(rel, "test/") {
			t.Errorf("the release carries %s, which only the tests use", rel)
		}
	}
	// SHA256SUMS names every other file.
	var listed []string
	for _, l := range strings.Split(strings.TrimSpace(string(readFile(t, filepath.Join(top, "SHA256SUMS")))), "\n") {
		if _, rel, ok := strings.Cut(l, "  "); ok {
			listed = append(listed, rel)
		}
	}
	var want []string
	for rel := range releaseFiles {
		if rel != "SHA256SUMS" {
			want = append(want, rel)
		}
	}
	sort.Strings(want)
	if strings.Join(listed, " ") != strings.Join(want, " ") {
		t.Errorf("SHA256SUMS lists %v, want %v", listed, want)
	}
}

// checkVersion: VERSION, the shim's -version, the installer image's tag and
// INSTALL agree on the release's version; the shim embeds both kernels.
func checkVersion(t *testing.T, top, version string, kernels map[string]string) {
	t.Helper()
	if got := strings.TrimSpace(string(readFile(t, filepath.Join(top, "VERSION")))); got != version {
		t.Errorf("VERSION %q, want %q", got, version)
	}
	v := string(mustOutput(t, top, "bin/containerd-shim-boxlite-v2", "-version"))
	for _, w := range []string{"Version:          " + version + "\n", "Embedded kernels: lean, net\n"} {
		if !strings.Contains(v, w) {
			t.Errorf("the release's shim -version lacks %q:\n%s", w, v)
		}
	}
	images := regexp.MustCompile(`(?m)^\s*image:\s*(\S+)\s*$`).FindAllStringSubmatch(string(readFile(t, filepath.Join(top, "deploy/kubernetes/boxlite-deploy.yaml"))), -1)
	if len(images) != 1 || images[0][1] != "boxlite/boxlite-deploy:"+version {
		t.Errorf("the release's DaemonSet runs %v, want boxlite/boxlite-deploy:%s", images, version)
	}
	install := string(readFile(t, filepath.Join(top, "INSTALL")))
	for _, w := range []string{version, "glibc 2.", "-t boxlite/boxlite-deploy:" + version + " ."} {
		if !strings.Contains(install, w) {
			t.Errorf("INSTALL does not say %q", w)
		}
	}
}

// checkHandlers: the running CRI plugin has both handlers from the
// installed drop-in, naming the installed shim configs.
func checkHandlers(t *testing.T, e *crid.Env, root string) {
	t.Helper()
	var info struct {
		Config struct {
			Containerd struct {
				Runtimes map[string]struct {
					RuntimeType string         `json:"runtimeType"`
					Options     map[string]any `json:"options"`
				} `json:"runtimes"`
			} `json:"containerd"`
		} `json:"config"`
	}
	if err := json.Unmarshal([]byte(e.Must(t, "info")), &info); err != nil {
		t.Fatal(err)
	}
	for h, cfg := range map[string]string{"boxlite": leanConfig, "boxlite-net": netConfig} {
		r, ok := info.Config.Containerd.Runtimes[h]
		if !ok || r.RuntimeType != "io.containerd.boxlite.v2" || r.Options["ConfigPath"] != filepath.Join(root, cfg) {
			t.Errorf("CRI handler %s = %+v, want io.containerd.boxlite.v2 with ConfigPath %s", h, r, filepath.Join(root, cfg))
		}
	}
}

// kernelsReport is the SHA-256 prefix the shim's `kernels` command shows
// for each embedded variant.
func kernelsReport(t *testing.T, shim, cfg string) map[string]string {
	t.Helper()
	out, err := exec.Command(shim, "kernels", "-config", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("%s kernels: %v\n%s", shim, err, out)
	}
	shas := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[0] != "VARIANT" && f[2] == "embedded" {
			if _, ok := shas[f[0]]; !ok {
				shas[f[0]] = f[3]
			}
		}
	}
	return shas
}

// edit replaces, in ROOT/rel, each key (which must occur exactly once) with
// its value.
func edit(t *testing.T, root, rel string, repl map[string]string) {
	t.Helper()
	p := filepath.Join(root, rel)
	s := string(readFile(t, p))
	for from, to := range repl {
		if n := strings.Count(s, from); n != 1 {
			t.Fatalf("/%s: %q occurs %d times, want once", rel, from, n)
		}
		s = strings.Replace(s, from, to, 1)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustOutput(t *testing.T, dir, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v (in %s): %v\nstdout:\n%s\nstderr:\n%s", name, args, dir, err, out.String(), errb.String())
	}
	return out.Bytes()
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	s := sha256.Sum256(readFile(t, p))
	return hex.EncodeToString(s[:])
}

// exeSHA is the SHA-256 of the executable process pid runs (through
// /proc/PID/exe, which reaches it from inside a jail too).
func exeSHA(t *testing.T, pid int) string {
	t.Helper()
	return sha256File(t, fmt.Sprintf("/proc/%d/exe", pid))
}

// tree lists every entry under root with its mode and content hash.
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		desc := info.Mode().String()
		if info.Mode().IsRegular() {
			desc += " " + sha256File(t, p)
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
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	var sorted []string
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	var d strings.Builder
	for _, k := range sorted {
		if a[k] != b[k] {
			fmt.Fprintf(&d, "  %s: %q -> %q\n", k, a[k], b[k])
		}
	}
	return d.String()
}
