package kernel

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
)

func TestLocateNotAvailable(t *testing.T) {
	tests := []struct {
		name    string
		embed   []Name
		paths   func(t *testing.T, dir string) map[Name]string
		wantErr []string
	}{
		{
			name:  "nothing embedded, no path",
			paths: func(*testing.T, string) map[Name]string { return nil },
			wantErr: []string{`kernel variant "net" is not available in this build`, "embeds no kernel",
				"(available: none)", "make KERNELS=\"net\"", "[kernel.paths] net = \"/path/to/libkrunfw.so.5\""},
		},
		{
			name:  "lean embedded",
			embed: []Name{Lean},
			paths: func(*testing.T, string) map[Name]string { return nil },
			wantErr: []string{"embeds [lean]", "(available: lean)",
				"make KERNELS=\"lean net\"", "[kernel.paths] net = "},
		},
		{
			name: "lean configured",
			paths: func(t *testing.T, dir string) map[Name]string {
				return map[Name]string{Lean: writeFile(t, dir, "lean.so", []byte("lean kernel"))}
			},
			wantErr: []string{"embeds no kernel", "(available: lean)", "make KERNELS=\"net\"", "[kernel.paths] net = "},
		},
		{
			name:    "empty configured path counts as none",
			paths:   func(*testing.T, string) map[Name]string { return map[Name]string{Net: ""} },
			wantErr: []string{"(available: none)", "[kernel.paths] net = "},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateRegistry(t)
			for _, n := range tt.embed {
				registerTestBlob(t, n, 4096)
			}
			dir := t.TempDir()
			p := Policy{Default: Lean, Allowed: []Name{Lean, Net}, Paths: tt.paths(t, dir)}
			cache := filepath.Join(dir, "cache")
			src, err := Locate(Net, p, cache)
			if err == nil {
				t.Fatalf("Locate(net) = %+v, want an error", src)
			}
			if !errdefs.IsNotFound(err) {
				t.Errorf("error %v does not match ErrNotFound", err)
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			// Never a substitute: nothing was extracted for net.
			if _, err := os.Stat(filepath.Join(cache, "kernels")); len(tt.embed) == 0 && err == nil {
				t.Error("a failed Locate wrote into the cache")
			}
		})
	}
}

func TestLocateConfiguredPath(t *testing.T) {
	isolateRegistry(t)
	dir := t.TempDir()
	content := []byte("\x7fELF a distro's libkrunfw.so.5")
	path := writeFile(t, dir, "libkrunfw.so.5.5.0", content)
	link := filepath.Join(dir, "libkrunfw.so.5")
	if err := os.Symlink("libkrunfw.so.5.5.0", link); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache")

	for _, p := range []string{path, link, dir + "/./libkrunfw.so.5.5.0"} {
		policy := Policy{Default: Lean, Allowed: []Name{Lean}, Paths: map[Name]string{Lean: p}}
		src, err := Locate(Lean, policy, cache)
		if err != nil {
			t.Fatalf("Locate(lean) with [kernel.paths] lean = %q: %v", p, err)
		}
		want := Source{Name: Lean, Path: filepath.Clean(p), Embedded: false, SHA256: sha256Hex(content)}
		if src != want {
			t.Errorf("Locate(lean) = %+v, want %+v", src, want)
		}
	}
	if _, err := os.Stat(cache); err == nil {
		t.Error("Locate of a configured path wrote into the cache")
	}
}

func TestLocateConfiguredPathWinsOverEmbedded(t *testing.T) {
	isolateRegistry(t)
	registerTestBlob(t, Lean, 4096)
	dir := t.TempDir()
	content := []byte("configured lean")
	path := writeFile(t, dir, "lean.so", content)
	src, err := Locate(Lean, Policy{Paths: map[Name]string{Lean: path}}, filepath.Join(dir, "cache"))
	if err != nil {
		t.Fatal(err)
	}
	if src.Path != path || src.Embedded || src.SHA256 != sha256Hex(content) {
		t.Errorf("Locate(lean) = %+v, want the configured %s", src, path)
	}
}

func TestLocateEmbedded(t *testing.T) {
	isolateRegistry(t)
	content, sum := registerTestBlob(t, Net, 64<<10)
	cache := t.TempDir()
	src, err := Locate(Net, Policy{}, cache)
	if err != nil {
		t.Fatal(err)
	}
	want := Source{Name: Net, Path: cachePath(cache, sum), Embedded: true, SHA256: sum}
	if src != want {
		t.Errorf("Locate(net) = %+v, want %+v", src, want)
	}
	assertCacheHoldsOnly(t, cache, sum, content)
}

func TestLocateConfiguredPathErrors(t *testing.T) {
	isolateRegistry(t)
	registerTestBlob(t, Lean, 4096) // a configured path wins even when it is broken
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	unreadable := writeFile(t, dir, "unreadable", []byte("kernel"))
	if err := os.Chmod(unreadable, 0); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		path     string
		kind     error
		fsErr    error
		wantErr  []string
		skipRoot bool
	}{
		{name: "missing", path: filepath.Join(dir, "missing.so"), kind: errdefs.ErrNotFound, fsErr: fs.ErrNotExist,
			wantErr: []string{"no such file"}},
		{name: "directory", path: dir, kind: errdefs.ErrInvalidArgument, wantErr: []string{"is a directory"}},
		{name: "fifo", path: fifo, kind: errdefs.ErrInvalidArgument, wantErr: []string{"not a regular file"}},
		{name: "empty", path: writeFile(t, dir, "empty", nil), kind: errdefs.ErrInvalidArgument, wantErr: []string{"is empty"}},
		{name: "relative", path: "lib/libkrunfw.so.5", kind: errdefs.ErrInvalidArgument, wantErr: []string{"must be an absolute path"}},
		{name: "unreadable", path: unreadable, kind: errdefs.ErrPermissionDenied, fsErr: fs.ErrPermission,
			wantErr: []string{"permission denied"}, skipRoot: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.skipRoot && os.Geteuid() == 0 {
				t.Skip("runs as root, which reads any file: an unreadable kernel path needs a non-root user")
			}
			p := Policy{Default: Lean, Allowed: []Name{Lean}, Paths: map[Name]string{Lean: tt.path}}
			src, err := Locate(Lean, p, filepath.Join(dir, "cache"))
			if err == nil {
				t.Fatalf("Locate = %+v, want an error", src)
			}
			if !errors.Is(err, tt.kind) {
				t.Errorf("error %v does not match %v", err, tt.kind)
			}
			if tt.fsErr != nil && !errors.Is(err, tt.fsErr) {
				t.Errorf("error %v does not match %v", err, tt.fsErr)
			}
			for _, s := range append([]string{"[kernel.paths] lean = " + quote(tt.path)}, tt.wantErr...) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}

func TestLocateUnknownVariant(t *testing.T) {
	_, err := Locate("fat", Policy{Paths: map[Name]string{"fat": "/x"}}, t.TempDir())
	if !errdefs.IsInvalidArgument(err) {
		t.Errorf("Locate(fat) error = %v, want ErrInvalidArgument", err)
	}
}

func TestAvailable(t *testing.T) {
	tests := []struct {
		name  string
		embed []Name
		paths map[Name]string
		want  []Name
	}{
		{name: "none"},
		{name: "embedded", embed: []Name{Net}, want: []Name{Net}},
		{name: "configured", paths: map[Name]string{Net: "/x/net.so", Lean: "/x/lean.so"}, want: []Name{Lean, Net}},
		{name: "both", embed: []Name{Lean}, paths: map[Name]string{Net: "/x/net.so"}, want: []Name{Lean, Net}},
		{name: "overlap", embed: []Name{Lean}, paths: map[Name]string{Lean: "/x/lean.so"}, want: []Name{Lean}},
		{name: "empty path and unknown key", paths: map[Name]string{Net: "", "fat": "/x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateRegistry(t)
			for _, n := range tt.embed {
				registerTestBlob(t, n, 1024)
			}
			if got := Available(Policy{Paths: tt.paths}); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Available = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSelectAndLocate(t *testing.T) {
	isolateRegistry(t)
	dir := t.TempDir()
	lean := []byte("configured lean kernel")
	p := Policy{
		Default: Lean,
		Allowed: []Name{Lean, Net},
		Paths:   map[Name]string{Lean: writeFile(t, dir, "lean.so", lean)},
	}
	cache := filepath.Join(dir, "cache")

	// The default, lean, comes from its configured path; no net blob exists.
	src, err := selectAndLocate(nil, p, cache)
	if err != nil {
		t.Fatal(err)
	}
	if src.Name != Lean || src.Embedded || src.SHA256 != sha256Hex(lean) {
		t.Errorf("SelectAndLocate(nil) = %+v", src)
	}
	// net is allowed but not available: an error, never lean instead.
	src, err = selectAndLocate(map[string]string{Annotation: "net"}, p, cache)
	if !errdefs.IsNotFound(err) || src != (Source{}) {
		t.Errorf("SelectAndLocate(net) = %+v, %v; want ErrNotFound", src, err)
	}
	// A disallowed variant is refused before availability is looked at.
	p.Allowed = []Name{Lean}
	_, err = selectAndLocate(map[string]string{Annotation: "net"}, p, cache)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "not allowed") {
		t.Errorf("SelectAndLocate(net) with allowed [lean] = %v; want a not-allowed error", err)
	}
}

func selectAndLocate(ann map[string]string, p Policy, cacheDir string) (Source, error) {
	n, err := Select(ann, p)
	if err != nil {
		return Source{}, err
	}
	return Locate(n, p, cacheDir)
}
