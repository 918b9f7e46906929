package kernel

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestExtract(t *testing.T) {
	isolateRegistry(t)
	content, sum := registerTestBlob(t, Lean, 256<<10)
	cache := filepath.Join(t.TempDir(), "cache")

	old := syscall.Umask(0o077) // modes must not depend on the umask
	t.Cleanup(func() { syscall.Umask(old) })

	path, err := Extract(Lean, cache)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(cache, "kernels", "sha256", sum, "libkrunfw.so.5"); path != want {
		t.Errorf("Extract = %s, want %s", path, want)
	}
	assertCacheHoldsOnly(t, cache, sum, content)
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o644 {
		t.Errorf("%s has mode %v, want -rw-r--r--", path, fi.Mode())
	}
	for _, d := range []string{"kernels", "kernels/sha256", "kernels/sha256/" + sum} {
		fi, err := os.Stat(filepath.Join(cache, d))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o755 {
			t.Errorf("%s has mode %v, want 0755", d, fi.Mode().Perm())
		}
	}
	if err := Verify(path, sum); err != nil {
		t.Error(err)
	}
}

func TestExtractRelativeCacheDir(t *testing.T) {
	isolateRegistry(t)
	_, sum := registerTestBlob(t, Lean, 1024)
	dir := t.TempDir()
	t.Chdir(dir)
	path, err := Extract(Lean, "cache")
	if err != nil {
		t.Fatal(err)
	}
	if want := cachePath(filepath.Join(dir, "cache"), sum); path != want {
		t.Errorf("Extract(lean, \"cache\") = %s, want the absolute %s", path, want)
	}
}

func TestExtractReusesVerifiedFile(t *testing.T) {
	isolateRegistry(t)
	content, sum := registerTestBlob(t, Lean, 64<<10)
	cache := t.TempDir()
	path, err := Extract(Lean, cache)
	if err != nil {
		t.Fatal(err)
	}
	// Age the file so a rewrite would show in its mtime too.
	past := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(path, past, past); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(path)
	n := hashes.Load()
	for range 3 {
		again, err := Extract(Lean, cache)
		if err != nil || again != path {
			t.Fatalf("second Extract = %s, %v; want %s", again, err, path)
		}
	}
	// Chtimes changed the file's ctime: the first of the three hashes it
	// again (and records it), the others take the verification record.
	if got := hashes.Load() - n; got != 1 {
		t.Errorf("3 Extracts of a verified file hashed it %d times, want 1 (after its times changed), then none", got)
	}
	after, _ := os.Stat(path)
	if !os.SameFile(before, after) || !after.ModTime().Equal(past) {
		t.Errorf("Extract rewrote a verified file (inode or mtime changed)")
	}
	assertCacheHoldsOnly(t, cache, sum, content)
}

func TestExtractReplacesDamagedFile(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, path string, content []byte)
	}{
		{"flipped byte", func(t *testing.T, path string, content []byte) {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte{content[len(content)/3] ^ 0x01}, int64(len(content)/3)); err != nil {
				t.Fatal(err)
			}
		}},
		// Edited in place, and its times put back: the change time moves
		// anyway, so the verification record no longer matches.
		{"edited in place, times restored", func(t *testing.T, path string, content []byte) {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte{content[7] ^ 0x80}, 7); err != nil {
				t.Fatal(err)
			}
			f.Close()
			if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated", func(t *testing.T, path string, content []byte) {
			if err := os.Truncate(path, int64(len(content)/2)); err != nil {
				t.Fatal(err)
			}
		}},
		{"empty", func(t *testing.T, path string, _ []byte) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}},
		{"extended", func(t *testing.T, path string, _ []byte) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			f.Write([]byte("trailing junk"))
		}},
		{"symlink to a good copy", func(t *testing.T, path string, content []byte) {
			good := filepath.Join(t.TempDir(), "good")
			if err := os.WriteFile(good, content, 0o644); err != nil {
				t.Fatal(err)
			}
			os.Remove(path)
			if err := os.Symlink(good, path); err != nil {
				t.Fatal(err)
			}
		}},
		{"missing", func(t *testing.T, path string, _ []byte) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateRegistry(t)
			content, sum := registerTestBlob(t, Lean, 64<<10)
			cache := t.TempDir()
			path, err := Extract(Lean, cache)
			if err != nil {
				t.Fatal(err)
			}
			tt.damage(t, path, content)
			if Verify(path, sum) == nil && tt.name != "symlink to a good copy" {
				t.Fatal("damage went unnoticed by Verify")
			}
			again, err := Extract(Lean, cache)
			if err != nil || again != path {
				t.Fatalf("Extract after damage = %s, %v; want %s", again, err, path)
			}
			fi, err := os.Lstat(path)
			if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
				t.Errorf("replaced file: %v, %v; want a regular 0644 file", fi, err)
			}
			assertCacheHoldsOnly(t, cache, sum, content)
		})
	}
}

func TestExtractRemovesStaleTemporaryFiles(t *testing.T) {
	isolateRegistry(t)
	content, sum := registerTestBlob(t, Lean, 4096)
	cache := t.TempDir()
	dir := filepath.Dir(cachePath(cache, sum))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stale := writeFile(t, dir, ".libkrunfw.so.5.tmp-123", []byte("half a kernel"))
	past := time.Now().Add(-2 * staleTemp)
	if err := os.Chtimes(stale, past, past); err != nil {
		t.Fatal(err)
	}
	live := writeFile(t, dir, ".libkrunfw.so.5.tmp-456", []byte("being written"))
	if _, err := Extract(Lean, cache); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); err == nil {
		t.Error("a stale temporary file survived extraction")
	}
	if _, err := os.Stat(live); err != nil {
		t.Error("extraction removed another extraction's live temporary file")
	}
	os.Remove(live)
	assertCacheHoldsOnly(t, cache, sum, content)
}

func TestExtractCorruptEmbeddedBlob(t *testing.T) {
	content, zst, sum := makeBlob(t, 64<<10)
	otherSum := sha256Hex(append(content, 0))
	tests := []struct {
		name    string
		zst     []byte
		sum     string
		wantErr string
	}{
		{"wrong sha", zst, otherSum, "decompresses to sha256 " + sum + ", but the binary records " + otherSum},
		{"not zstd", []byte("this is not zstd data"), sum, "decompress"},
		{"truncated zstd", zst[:len(zst)/2], sum, "is corrupt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateRegistry(t)
			register(Net, tt.zst, tt.sum)
			cache := t.TempDir()
			path, err := Extract(Net, cache)
			if err == nil {
				t.Fatalf("Extract = %s, want an error", path)
			}
			if !errdefs.IsDataLoss(err) {
				t.Errorf("error %v does not match ErrDataLoss", err)
			}
			for _, s := range []string{"embedded blob of kernel variant net is corrupt", tt.wantErr, "rebuild the binary"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			dir := filepath.Dir(cachePath(cache, tt.sum))
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("a failed extraction left %v in %s", names(entries), dir)
			}
		})
	}
}

func TestExtractErrors(t *testing.T) {
	isolateRegistry(t)
	registerTestBlob(t, Lean, 1024)
	if _, err := Extract(Net, t.TempDir()); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "embeds [lean]") {
		t.Errorf("Extract(net) with only lean embedded = %v; want ErrNotFound naming lean", err)
	}
	if _, err := Extract(Lean, ""); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Extract(lean, \"\") = %v; want ErrInvalidArgument", err)
	}
	if _, err := Extract("fat", t.TempDir()); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Extract(fat) = %v; want ErrInvalidArgument", err)
	}
	// A file where a cache directory belongs.
	cache := t.TempDir()
	writeFile(t, cache, "kernels", []byte("in the way"))
	if _, err := Extract(Lean, cache); err == nil {
		t.Error("Extract into a cache whose kernels/ is a file succeeded")
	}
}

func TestExtractConcurrentGoroutines(t *testing.T) {
	isolateRegistry(t)
	content, sum := registerTestBlob(t, Lean, 512<<10)
	cache := filepath.Join(t.TempDir(), "cache") // empty, not even created
	extractConcurrently(t, 32, cache)
	assertCacheHoldsOnly(t, cache, sum, content)
}

// extractConcurrently runs n goroutines extracting lean into cache at once.
func extractConcurrently(t *testing.T, n int, cache string) {
	t.Helper()
	want := cachePath(cache, mustSHA(t, Lean))
	start := make(chan struct{})
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			path, err := Extract(Lean, cache)
			if err == nil && path != want {
				err = fmt.Errorf("Extract = %s, want %s", path, want)
			}
			if err == nil {
				err = Verify(path, mustSHA(t, Lean))
			}
			errs <- err
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func mustSHA(t *testing.T, n Name) string {
	sum, ok := EmbeddedSHA256(n)
	if !ok {
		t.Fatalf("variant %s is not registered", n)
	}
	return sum
}

// The helper processes of TestExtractConcurrentProcesses run this test with
// these variables set; otherwise it does nothing.
const (
	helperCacheEnv = "BOXLITE_KERNEL_TEST_HELPER_CACHE"
	helperBlobEnv  = "BOXLITE_KERNEL_TEST_HELPER_BLOB"
	helperSHAEnv   = "BOXLITE_KERNEL_TEST_HELPER_SHA"
	helperGoEnv    = "BOXLITE_KERNEL_TEST_HELPER_GO"
)

func TestExtractHelperProcess(t *testing.T) {
	cache := os.Getenv(helperCacheEnv)
	if cache == "" {
		return
	}
	isolateRegistry(t)
	zst, err := os.ReadFile(os.Getenv(helperBlobEnv))
	if err != nil {
		t.Fatal(err)
	}
	register(Lean, zst, os.Getenv(helperSHAEnv))
	// Wait for the parent's signal, so all processes race.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
		if _, err := os.Stat(os.Getenv(helperGoEnv)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no start signal from the parent")
		}
	}
	extractConcurrently(t, 8, cache)
}

func TestExtractConcurrentProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped under -short: it starts helper processes")
	}
	isolateRegistry(t)
	content, zst, sum := makeBlob(t, 512<<10)
	register(Lean, zst, sum)
	dir := t.TempDir()
	blobPath := writeFile(t, dir, "blob.zst", zst)
	cache := filepath.Join(dir, "cache")
	goFile := filepath.Join(dir, "go")

	const procs = 4
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^TestExtractHelperProcess$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(),
			helperCacheEnv+"="+cache, helperBlobEnv+"="+blobPath,
			helperSHAEnv+"="+sum, helperGoEnv+"="+goFile)
		out := new(bytes.Buffer)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		cmds = append(cmds, cmd)
		outs = append(outs, out)
	}
	// Let the helpers reach their barrier, then release them and race them
	// with this process's own goroutines.
	time.Sleep(200 * time.Millisecond)
	if err := os.WriteFile(goFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	extractConcurrently(t, 8, cache)
	for i, cmd := range cmds {
		err := cmd.Wait()
		if err != nil || !strings.Contains(outs[i].String(), "--- PASS: TestExtractHelperProcess") {
			t.Errorf("helper process %d: %v\n%s", i, err, outs[i])
		}
	}
	assertCacheHoldsOnly(t, cache, sum, content)
}

func TestVerify(t *testing.T) {
	dir := t.TempDir()
	content := []byte("a kernel")
	sum := sha256Hex(content)
	path := writeFile(t, dir, "k", content)
	tests := []struct {
		name, path, want string
		kind             error // nil: no error
	}{
		{"match", path, sum, nil},
		{"upper-case hex", path, strings.ToUpper(sum), nil},
		{"mismatch", path, sha256Hex([]byte("another kernel")), errdefs.ErrDataLoss},
		{"bad hex", path, "abc", errdefs.ErrInvalidArgument},
		{"missing", filepath.Join(dir, "missing"), sum, errdefs.ErrNotFound},
		{"directory", dir, sum, errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.path, tt.want)
			if tt.kind == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !errdefsIs(err, tt.kind) {
				t.Errorf("Verify = %v, want an error matching %v", err, tt.kind)
			}
		})
	}
}

func errdefsIs(err, kind error) bool {
	switch kind {
	case errdefs.ErrDataLoss:
		return errdefs.IsDataLoss(err)
	case errdefs.ErrInvalidArgument:
		return errdefs.IsInvalidArgument(err)
	case errdefs.ErrNotFound:
		return errdefs.IsNotFound(err)
	}
	return false
}
