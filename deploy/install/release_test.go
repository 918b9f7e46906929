package install

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// fakeRelease is an unpacked release as make release lays it out (the
// repository's install.sh and node files, fake binaries, VERSION, INSTALL,
// SHA256SUMS over every other file); deploy/release builds the real one and
// test/release installs that.
func fakeRelease(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"VERSION": "1.2.3\n",
		"INSTALL": "how to install\n",
	}
	for _, b := range binaries {
		files["bin/"+b] = "#!/bin/sh\necho release " + b + "\n"
	}
	for _, f := range []string{"install/install.sh", "containerd/boxlite.toml", "boxlite/config.toml", "boxlite/config-net.toml"} {
		files["deploy/"+f] = readFile(t, filepath.Join(deployDir(t), f))
	}
	for rel, content := range files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(rel, "bin/") || strings.HasSuffix(rel, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	writeSums(t, dir)
	return dir
}

// writeSums writes dir/SHA256SUMS over every regular file below dir but
// itself, as sha256sum does ("HEX  PATH"), sorted by path.
func writeSums(t *testing.T, dir string) {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "SHA256SUMS" {
			return nil
		}
		lines = append(lines, sha256File(t, p)+"  "+rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(lines, func(i, j int) bool { return lines[i][66:] < lines[j][66:] })
	if err := os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func appendTo(t *testing.T, p, text string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// dropSum removes rel's line from dir/SHA256SUMS.
func dropSum(t *testing.T, dir, rel string) {
	t.Helper()
	p := filepath.Join(dir, "SHA256SUMS")
	var keep []string
	for _, l := range strings.SplitAfter(readFile(t, p), "\n") {
		if !strings.HasSuffix(l, "  "+rel+"\n") {
			keep = append(keep, l)
		}
	}
	if err := os.WriteFile(p, []byte(strings.Join(keep, "")), 0o644); err != nil {
		t.Fatal(err)
	}
}

// releaseScript runs the release's own install.sh as an operator does, from
// the release's top directory with a relative path.
func releaseScript(t *testing.T, rel string, args ...string) result {
	t.Helper()
	return runIn(t, rel, "./deploy/install/install.sh", "", args...)
}

// TestReleaseInstall: install.sh run from an unpacked release finds the
// release's bin/ by itself, checks SHA256SUMS and installs the release's
// files; uninstall restores the root.
func TestReleaseInstall(t *testing.T) {
	forEachShell(t, func(t *testing.T) {
		rel := fakeRelease(t)
		root := scratchRoot(t, map[string]string{"etc/hostname": "node1\n"})
		before := tree(t, root)
		r := releaseScript(t, rel, "install", "--root", root)
		if r.code != 0 {
			t.Fatalf("install: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}
		if want := "release 1.2.3: 9 files match SHA256SUMS"; !strings.Contains(r.stdout, want) {
			t.Errorf("install did not say %q:\n%s", want, r.stdout)
		}
		checkInstalled(t, root, filepath.Join(rel, "bin"))
		// The same binaries under another --bin pass the check too (as the
		// DaemonSet's --bin /opt/boxlite/bin, the image's copy).
		other := t.TempDir()
		for _, b := range binaries {
			if err := os.WriteFile(filepath.Join(other, b), []byte(readFile(t, filepath.Join(rel, "bin", b))), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if r := releaseScript(t, rel, "install", "--root", root, "--bin", other); r.code != 0 {
			t.Errorf("install --bin with the release's binaries: exit %d\n%s", r.code, r.stderr)
		}
		if r := releaseScript(t, rel, "uninstall", "--root", root); r.code != 0 {
			t.Fatalf("uninstall: exit %d\n%s", r.code, r.stderr)
		}
		if d := diffTrees(before, tree(t, root)); d != "" {
			t.Errorf("after uninstall the root differs from before install:\n%s", d)
		}
	})
}

// TestReleaseRefused: a release whose files do not match SHA256SUMS, or
// whose SHA256SUMS does not cover what install takes, installs nothing and
// says what is wrong.
func TestReleaseRefused(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(t *testing.T, rel string) []string // extra arguments
		want   []string
	}{
		{"binary changed", func(t *testing.T, rel string) []string {
			appendTo(t, filepath.Join(rel, "bin", "boxlite-vmm"), "tampered\n")
			return nil
		}, []string{"bin/boxlite-vmm: SHA-256 ", "SHA256SUMS says"}},
		{"config changed", func(t *testing.T, rel string) []string {
			appendTo(t, filepath.Join(rel, "deploy", "boxlite", "config.toml"), "libkrun_path = \"/tmp/x.so\"\n")
			return nil
		}, []string{"deploy/boxlite/config.toml: SHA-256"}},
		{"install.sh changed", func(t *testing.T, rel string) []string {
			appendTo(t, filepath.Join(rel, "deploy", "install", "install.sh"), "# edited\n")
			return nil
		}, []string{"deploy/install/install.sh: SHA-256"}},
		{"two files changed, both named", func(t *testing.T, rel string) []string {
			appendTo(t, filepath.Join(rel, "bin", "boxlite-agent"), "x")
			appendTo(t, filepath.Join(rel, "VERSION"), "x")
			return nil
		}, []string{"bin/boxlite-agent: SHA-256", "VERSION: SHA-256"}},
		{"listed file missing", func(t *testing.T, rel string) []string {
			if err := os.Remove(filepath.Join(rel, "INSTALL")); err != nil {
				t.Fatal(err)
			}
			return nil
		}, []string{"INSTALL: listed in SHA256SUMS but missing"}},
		{"listed file a link", func(t *testing.T, rel string) []string {
			p := filepath.Join(rel, "INSTALL")
			copyTo := filepath.Join(t.TempDir(), "INSTALL")
			if err := os.WriteFile(copyTo, []byte(readFile(t, p)), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(copyTo, p); err != nil {
				t.Fatal(err)
			}
			return nil
		}, []string{"INSTALL: listed in SHA256SUMS but missing, or not a regular file"}},
		{"drop-in not listed", func(t *testing.T, rel string) []string {
			dropSum(t, rel, "deploy/containerd/boxlite.toml")
			return nil
		}, []string{"deploy/containerd/boxlite.toml: not listed in SHA256SUMS"}},
		{"binary not listed", func(t *testing.T, rel string) []string {
			dropSum(t, rel, "bin/containerd-shim-boxlite-v2")
			return nil
		}, []string{"bin/containerd-shim-boxlite-v2: not listed in SHA256SUMS"}},
		{"malformed line", func(t *testing.T, rel string) []string {
			appendTo(t, filepath.Join(rel, "SHA256SUMS"), "not a checksum line\n")
			return nil
		}, []string{"SHA256SUMS line 10 is not a SHA-256 and a relative path inside the release: not a checksum line"}},
		{"path outside the release", func(t *testing.T, rel string) []string {
			appendTo(t, filepath.Join(rel, "SHA256SUMS"), strings.Repeat("0", 64)+"  ../outside\n")
			return nil
		}, []string{"SHA256SUMS line 10 is not a SHA-256 and a relative path inside the release"}},
		{"absolute path", func(t *testing.T, rel string) []string {
			appendTo(t, filepath.Join(rel, "SHA256SUMS"), strings.Repeat("0", 64)+"  /etc/passwd\n")
			return nil
		}, []string{"SHA256SUMS line 10 is not a SHA-256"}},
		{"short checksum", func(t *testing.T, rel string) []string {
			appendTo(t, filepath.Join(rel, "SHA256SUMS"), strings.Repeat("0", 63)+"  INSTALL\n")
			return nil
		}, []string{"SHA256SUMS line 10 is not a SHA-256"}},
		{"SHA256SUMS missing", func(t *testing.T, rel string) []string {
			if err := os.Remove(filepath.Join(rel, "SHA256SUMS")); err != nil {
				t.Fatal(err)
			}
			return nil
		}, []string{"but no SHA256SUMS: refusing to install files that cannot be verified"}},
		{"--bin with other binaries", func(t *testing.T, rel string) []string {
			return []string{"--bin", fakeBin(t)}
		}, []string{"(--bin): SHA-256 ", "SHA256SUMS says", "for bin/boxlite-vmm"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			forEachShell(t, func(t *testing.T) {
				rel := fakeRelease(t)
				extra := c.change(t, rel)
				root := scratchRoot(t, map[string]string{"etc/hostname": "node1\n"})
				before := tree(t, root)
				r := releaseScript(t, rel, append([]string{"install", "--root", root}, extra...)...)
				if r.code != 1 {
					t.Errorf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
				}
				if !strings.Contains(r.stderr, "error:") {
					t.Errorf("stderr has no error: %q", r.stderr)
				}
				for _, w := range c.want {
					if !strings.Contains(r.stderr, w) {
						t.Errorf("stderr does not say %q:\n%s", w, r.stderr)
					}
				}
				if c.name != "SHA256SUMS missing" && !strings.Contains(r.stderr, "does not match its SHA256SUMS") {
					t.Errorf("stderr does not say the release does not match SHA256SUMS:\n%s", r.stderr)
				}
				if d := diffTrees(before, tree(t, root)); d != "" {
					t.Errorf("a refused install wrote into the root:\n%s", d)
				}
				// verify refuses alike.
				if v := releaseScript(t, rel, append([]string{"verify"}, extra...)...); v.code != 1 || !strings.Contains(v.stderr, c.want[0]) {
					t.Errorf("verify: exit %d, stderr %q; want 1 and %q", v.code, v.stderr, c.want[0])
				}
			})
		})
	}
}

// TestVerify: verify checks an unpacked release and writes nothing; in a
// repository checkout there is nothing to verify.
func TestVerify(t *testing.T) {
	rel := fakeRelease(t)
	before := tree(t, rel)
	r := releaseScript(t, rel, "verify")
	if r.code != 0 || !strings.Contains(r.stdout, "release 1.2.3: 9 files match SHA256SUMS") {
		t.Errorf("verify: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if d := diffTrees(before, tree(t, rel)); d != "" {
		t.Errorf("verify changed the release:\n%s", d)
	}
	r = run(t, "", "verify")
	if r.code != 1 || !strings.Contains(r.stderr, "is not an unpacked release") {
		t.Errorf("verify in the repository: exit %d, stderr %q", r.code, r.stderr)
	}
}

// forEachShell runs f under /bin/sh and then as a subtest under each other
// shell present (bash, busybox sh).
func forEachShell(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	f(t)
	for _, sh := range otherShells() {
		t.Run(filepath.Base(sh), func(t *testing.T) {
			old := shell
			shell = sh
			t.Cleanup(func() { shell = old })
			f(t)
		})
	}
}
