package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

const testEpoch = 1700000000

// repoRoot is the repository root (two levels above this package).
func repoRoot(t *testing.T) string {
	t.Helper()
	d, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d, "go.mod")); err != nil {
		t.Fatalf("repository root: %v", err)
	}
	return d
}

// fakeBin is a -bin directory: each binary a distinct content with the
// given mode, every file's mtime at mtime.
func fakeBin(t *testing.T, mode os.FileMode, mtime time.Time) string {
	t.Helper()
	dir := t.TempDir()
	for _, b := range binaries {
		p := filepath.Join(dir, b)
		if err := os.WriteFile(p, []byte("binary "+b+"\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var testFacts = binaryFacts{vmmGlibc: "2.34", vmmLibs: []string{"libc.so.6"}, kernels: []string{"lean", "net"}}

func build(t *testing.T, o options, shuffle bool) []byte {
	t.Helper()
	files, err := layout(o, testFacts)
	if err != nil {
		t.Fatal(err)
	}
	if shuffle {
		for i, j := 0, len(files)-1; i < j; i, j = i+1, j-1 {
			files[i], files[j] = files[j], files[i]
		}
	}
	data, err := archive(releaseName(o.version), o.epoch, files)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestReproducible: the tarball depends only on the files' contents, the
// version and the epoch: not on the binaries' modes or mtimes, the umask,
// the order files come in, or when it is made.
func TestReproducible(t *testing.T) {
	o := options{version: "1.2.3", revision: "abc", epoch: testEpoch, src: repoRoot(t)}
	o.bin = fakeBin(t, 0o755, time.Unix(1, 0))
	a := build(t, o, false)

	old := umask(0o077)
	o.bin = fakeBin(t, 0o700, time.Now())
	umask(old)
	time.Sleep(1100 * time.Millisecond) // another second on the clock
	b := build(t, o, true)
	if !bytes.Equal(a, b) {
		t.Fatalf("two builds of the same inputs differ (%d and %d bytes)", len(a), len(b))
	}
	o.epoch++
	if bytes.Equal(a, build(t, o, false)) {
		t.Error("the epoch does not reach the tarball")
	}
}

func umask(m int) int { return syscall.Umask(m) }

type entry struct {
	h    *tar.Header
	data []byte
}

func unpack(t *testing.T, data []byte) (*gzip.Header, []entry) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out []entry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, entry{h, b})
	}
	return &zr.Header, out
}

// TestTarball checks every entry: one top directory, path order with each
// directory before its contents, root:root, the epoch as mtime, 0755 for
// directories, binaries and install.sh, 0644 for the rest; exactly the files
// a release carries; SHA256SUMS over all the others; the manifest's image
// tag and VERSION are the version.
func TestTarball(t *testing.T) {
	const version = "0.4.0-2-gdeadbee-dirty"
	o := options{version: version, revision: "deadbeef", epoch: testEpoch, src: repoRoot(t), bin: fakeBin(t, 0o755, time.Now())}
	zh, entries := unpack(t, build(t, o, false))
	if zh.Name != "" || !zh.ModTime.IsZero() || zh.Comment != "" {
		t.Errorf("gzip header carries name %q, time %v, comment %q", zh.Name, zh.ModTime, zh.Comment)
	}
	top := "boxlite-shim-" + version + "-linux-amd64/"
	var names []string
	files := map[string][]byte{}
	for _, e := range entries {
		h := e.h
		names = append(names, h.Name)
		if !strings.HasPrefix(h.Name, top) {
			t.Errorf("%s is outside %s", h.Name, top)
			continue
		}
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "root" || h.Gname != "root" {
			t.Errorf("%s owned by %d:%d (%s:%s)", h.Name, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		if !h.ModTime.Equal(time.Unix(testEpoch, 0)) {
			t.Errorf("%s mtime %v, want the epoch", h.Name, h.ModTime)
		}
		rel := strings.TrimPrefix(h.Name, top)
		wantMode := int64(0o644)
		switch {
		case h.Typeflag == tar.TypeDir:
			wantMode = 0o755
			if !strings.HasSuffix(h.Name, "/") {
				t.Errorf("directory %s does not end in /", h.Name)
			}
		case h.Typeflag != tar.TypeReg:
			t.Errorf("%s: type %c, want a regular file or directory", h.Name, h.Typeflag)
		case strings.HasPrefix(rel, "bin/") || rel == "deploy/install/install.sh":
			wantMode = 0o755
		}
		if h.Mode != wantMode {
			t.Errorf("%s: mode %o, want %o", h.Name, h.Mode, wantMode)
		}
		if h.Typeflag == tar.TypeReg {
			files[rel] = e.data
		}
		if rel != "" {
			parent := top
			if d := path.Dir(strings.TrimSuffix(rel, "/")); d != "." {
				parent += d + "/"
			}
			if !contains(names[:len(names)-1], parent) {
				t.Errorf("%s comes before its directory %s", h.Name, parent)
			}
		}
	}
	if !sort.StringsAreSorted(names) || names[0] != top {
		t.Errorf("entries are not in path order from the top directory:\n%s", strings.Join(names, "\n"))
	}
	var got []string
	for rel := range files {
		got = append(got, rel)
	}
	sort.Strings(got)
	want := []string{"INSTALL", "SHA256SUMS", "VERSION",
		"bin/boxlite-agent", "bin/boxlite-vmm", "bin/containerd-shim-boxlite-v2",
		"deploy/boxlite/config-net.toml", "deploy/boxlite/config.toml", "deploy/containerd/boxlite.toml",
		"deploy/install/install.sh",
		"deploy/kubernetes/Dockerfile", "deploy/kubernetes/boxlite-deploy.yaml", "deploy/kubernetes/runtimeclasses.yaml"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("release files:\n %v\nwant\n %v", got, want)
	}

	// SHA256SUMS: every other file, its content's SHA-256, path order.
	var lines []string
	for _, rel := range got {
		if rel != "SHA256SUMS" {
			s := sha256.Sum256(files[rel])
			lines = append(lines, hex.EncodeToString(s[:])+"  "+rel)
		}
	}
	if g, w := string(files["SHA256SUMS"]), strings.Join(lines, "\n")+"\n"; g != w {
		t.Errorf("SHA256SUMS:\n%s\nwant\n%s", g, w)
	}

	// Copied files are the repository's, but for the pinned image tag.
	for _, f := range deployFiles {
		src, err := os.ReadFile(filepath.Join(o.src, f.path))
		if err != nil {
			t.Fatal(err)
		}
		if f.path == "deploy/kubernetes/boxlite-deploy.yaml" {
			continue
		}
		if !bytes.Equal(files[f.path], src) {
			t.Errorf("%s differs from the repository's", f.path)
		}
	}
	for _, b := range binaries {
		if string(files["bin/"+b]) != "binary "+b+"\n" {
			t.Errorf("bin/%s is not the -bin file", b)
		}
	}
	if string(files["VERSION"]) != version+"\n" {
		t.Errorf("VERSION = %q", files["VERSION"])
	}
	images := regexp.MustCompile(`(?m)^\s*image:\s*(\S+)\s*$`).FindAllStringSubmatch(string(files["deploy/kubernetes/boxlite-deploy.yaml"]), -1)
	if len(images) != 1 || images[0][1] != "boxlite/boxlite-deploy:"+version {
		t.Errorf("the release's boxlite-deploy.yaml runs %v, want boxlite/boxlite-deploy:%s", images, version)
	}
	install := string(files["INSTALL"])
	for _, w := range []string{version, "deadbeef", "glibc 2.34 or newer", "libc.so.6", "kernels embedded: lean, net",
		"sha256sum -c boxlite-shim-" + version + "-linux-amd64.tar.gz.sha256", "-t boxlite/boxlite-deploy:" + version + " .",
		"./deploy/install/install.sh install", time.Unix(testEpoch, 0).UTC().Format("2006-01-02")} {
		if !strings.Contains(install, w) {
			t.Errorf("INSTALL does not say %q:\n%s", w, install)
		}
	}
	if strings.Contains(install, "{{") || strings.Contains(install, "<no value>") {
		t.Errorf("INSTALL has an unfilled template field:\n%s", install)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestArchiveRefuses(t *testing.T) {
	for _, c := range []struct {
		name  string
		files []file
		want  string
	}{
		{"SHA256SUMS passed in", []file{{"SHA256SUMS", 0o644, nil}}, "made by archive"},
		{"a path twice", []file{{"a", 0o644, nil}, {"a", 0o644, nil}}, "twice"},
		{"absolute path", []file{{"/etc/x", 0o644, nil}}, "not a clean relative path"},
		{"dot-dot", []file{{"../x", 0o644, nil}}, "not a clean relative path"},
		{"unclean", []file{{"a//b", 0o644, nil}}, "not a clean relative path"},
		{"odd mode", []file{{"a", 0o600, nil}}, "0755 or 0644"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := archive("top", testEpoch, c.files); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err %v, want %q", err, c.want)
			}
		})
	}
}

func TestPinImage(t *testing.T) {
	for _, c := range []struct {
		name, in, want, err string
	}{
		{"tag", "a: 1\n    image: boxlite/boxlite-deploy:0.1.0\nb: 2\n", "a: 1\n    image: boxlite/boxlite-deploy:9.9\nb: 2\n", ""},
		{"trailing blanks", "  image: boxlite/boxlite-deploy:x  \n", "  image: boxlite/boxlite-deploy:9.9\n", ""},
		{"no image", "a: 1\n", "", "found 0"},
		{"digest, no tag", "  image: boxlite/boxlite-deploy@sha256:" + strings.Repeat("a", 64) + "\n", "", "found 0"},
		{"another image", "  image: other/boxlite-deploy:1\n", "", "found 0"},
		{"twice", "  image: boxlite/boxlite-deploy:1\n  image: boxlite/boxlite-deploy:2\n", "", "found 2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := pinImage([]byte(c.in), "9.9")
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Errorf("err %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || string(got) != c.want {
				t.Errorf("got %q, %v; want %q", got, err, c.want)
			}
		})
	}
	// The repository's manifest pins a tag the release can rewrite.
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "kubernetes", "boxlite-deploy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pinImage(b, "9.9"); err != nil {
		t.Errorf("deploy/kubernetes/boxlite-deploy.yaml: %v", err)
	}
}

func TestCheckVersion(t *testing.T) {
	for v, ok := range map[string]bool{
		"0.1.0": true, "v0.1.0-3-g1a2b3c4-dirty": true, "c5aec7a": true, "1.0.0-rc.1": true, "dev": true,
		"": false, "1.0+build": false, "-x": false, ".x": false, "a/b": false, "a b": false, strings.Repeat("a", 129): false,
	} {
		if err := checkVersion(v); (err == nil) != ok {
			t.Errorf("checkVersion(%q) = %v, want ok %v", v, err, ok)
		}
	}
}

func TestLessVersion(t *testing.T) {
	order := []string{"2.2.5", "2.3", "2.3.2", "2.14", "2.34", "2.34.1", "3.0"}
	for i := range order {
		for j := range order {
			a, _ := versionNumbers(order[i])
			b, _ := versionNumbers(order[j])
			if lessVersion(a, b) != (i < j) {
				t.Errorf("lessVersion(%s, %s) = %v", order[i], order[j], !(i < j))
			}
		}
	}
	a, _ := versionNumbers("2.34")
	b, _ := versionNumbers("2.34.0")
	if lessVersion(a, b) || lessVersion(b, a) {
		t.Error("2.34 and 2.34.0 differ")
	}
	if _, ok := versionNumbers("2.x"); ok {
		t.Error("2.x parsed")
	}
}

// TestGlibcNeeded compares the ELF reading with binutils' objdump on a
// dynamically linked system binary.
func TestGlibcNeeded(t *testing.T) {
	objdump, err := exec.LookPath("objdump")
	if err != nil {
		t.Skip("objdump (binutils) is not installed: nothing to compare with")
	}
	const bin = "/bin/sh"
	out, err := exec.Command(objdump, "-T", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	var newest []int
	want := ""
	for _, m := range regexp.MustCompile(`GLIBC_([0-9.]+)`).FindAllStringSubmatch(string(out), -1) {
		if n, ok := versionNumbers(m[1]); ok && (newest == nil || lessVersion(newest, n)) {
			newest, want = n, m[1]
		}
	}
	if want == "" {
		t.Fatalf("objdump -T %s shows no GLIBC_ version", bin)
	}
	got, err := glibcNeeded(bin)
	if err != nil || got != want {
		t.Errorf("glibcNeeded(%s) = %q, %v; objdump -T says %s", bin, got, err, want)
	}
	libs, err := dynamicDeps(bin)
	if err != nil || !contains(libs, "libc.so.6") {
		t.Errorf("dynamicDeps(%s) = %v, %v; want libc.so.6 among them", bin, libs, err)
	}
}

// TestStatic: a CGO_ENABLED=0 Go program has no dynamic dependencies and
// no glibc version.
func TestStatic(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(1) }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "static")
	cmd := exec.Command(goTool, "build", "-o", exe, src)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOTOOLCHAIN=local", "GO111MODULE=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if libs, err := dynamicDeps(exe); err != nil || libs != nil {
		t.Errorf("dynamicDeps(static Go program) = %v, %v; want none", libs, err)
	}
	if _, err := glibcNeeded(exe); err == nil || !strings.Contains(err.Error(), "no GLIBC_") {
		t.Errorf("glibcNeeded(static Go program): %v, want an error", err)
	}
}

// TestInspectRefuses: binaries that are not what a release carries are
// refused before anything is packed.
func TestInspectRefuses(t *testing.T) {
	for _, c := range []struct {
		name, shimOut, want string
	}{
		{"another version", "Version: 0.0.9\nEmbedded kernels: lean, net\n", `reports version "0.0.9", the release is "1.0.0"`},
		{"lean only", "Version: 1.0.0\nEmbedded kernels: lean\n", `embeds kernels [lean]`},
		{"no kernels", "Version: 1.0.0\nEmbedded kernels: none\n", `a release embeds lean and net`},
		// The version and kernels are right, but this shim is a script.
		{"not ELF", "Version: 1.0.0\nEmbedded kernels: lean, net\n", "containerd-shim-boxlite-v2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bin := fakeBin(t, 0o755, time.Now())
			script := "#!/bin/sh\ncat <<'EOF'\n" + c.shimOut + "EOF\n"
			if err := os.WriteFile(filepath.Join(bin, "containerd-shim-boxlite-v2"), []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			if _, err := inspectBinaries(bin, "1.0.0"); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err %v, want %q", err, c.want)
			}
		})
	}
}

// TestVersionScript runs deploy/release/version.sh in scratch repositories.
func TestVersionScript(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	script, err := filepath.Abs("version.sh")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	env := append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid")
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	version := func() string {
		t.Helper()
		cmd := exec.Command("sh", script)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("version.sh: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	if v := version(); v != "dev" {
		t.Errorf("outside a checkout: %q, want dev", v)
	}
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "f"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git("init", "-q")
	write("1")
	git("add", "f")
	git("commit", "-q", "-m", "one")
	short := git("rev-parse", "--short", "HEAD")
	for _, c := range []struct {
		name string
		do   func()
		want string
	}{
		{"no tag", func() {}, short},
		{"no tag, dirty", func() { write("2") }, short + "-dirty"},
		{"lightweight tag only (ignored, as by git describe)", func() { write("1"); git("tag", "light") }, short},
		{"on an annotated tag", func() { git("tag", "-a", "-m", "r", "v0.2.0") }, "0.2.0"},
		{"on the tag, dirty", func() { write("3") }, "v0.2.0-dirty"},
		{"a commit after the tag", func() { git("commit", "-q", "-am", "two") }, "v0.2.0-1-g" + "HEAD"},
		{"on a tag without v", func() { git("tag", "-a", "-m", "r", "1.0.0-rc.1") }, "1.0.0-rc.1"},
	} {
		c.do()
		want := strings.Replace(c.want, "HEAD", git("rev-parse", "--short", "HEAD"), 1)
		if got := version(); got != want {
			t.Errorf("%s: version %q, want %q", c.name, got, want)
		}
	}
}
