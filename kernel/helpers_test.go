package kernel

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// isolateRegistry gives the test an empty registry of embedded blobs (whatever
// the build tags embedded) and restores the real one when the test ends.
// Tests that use it must not run in parallel.
func isolateRegistry(t *testing.T) {
	t.Helper()
	registryMu.Lock()
	saved := registry
	registry = map[Name]blob{}
	registryMu.Unlock()
	t.Cleanup(func() {
		registryMu.Lock()
		registry = saved
		registryMu.Unlock()
	})
}

// makeBlob returns size bytes of content (random, then compressible), its
// zstd compression and its hex SHA-256.
func makeBlob(t *testing.T, size int) (content, zst []byte, sum string) {
	t.Helper()
	content = make([]byte, size)
	rand.Read(content[:size/2])
	copy(content[size/2:], bytes.Repeat([]byte("libkrunfw "), size/20+1))
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	zst = enc.EncodeAll(content, nil)
	enc.Close()
	return content, zst, sha256Hex(content)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// registerTestBlob embeds a fresh test blob as variant n in the (isolated)
// registry, and removes it when the test ends.
func registerTestBlob(t *testing.T, n Name, size int) (content []byte, sum string) {
	t.Helper()
	content, zst, sum := makeBlob(t, size)
	register(n, zst, sum+"  test-blob\n")
	t.Cleanup(func() { unregister(n) })
	return content, sum
}

func unregister(n Name) {
	registryMu.Lock()
	delete(registry, n)
	registryMu.Unlock()
}

// writeFile writes content to dir/name and returns the path.
func writeFile(t *testing.T, dir, name string, content []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// assertCacheHoldsOnly checks that the cache holds exactly one blob, sum,
// with this content and its verification record, and no temporary files.
func assertCacheHoldsOnly(t *testing.T, cacheDir, sum string, content []byte) {
	t.Helper()
	shaDir := filepath.Join(cacheDir, "kernels", "sha256")
	entries, err := os.ReadDir(shaDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != sum {
		t.Errorf("%s holds %v, want only %s", shaDir, names(entries), sum)
	}
	dir := filepath.Join(shaDir, sum)
	entries, err = os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0].Name() != SOName || entries[1].Name() != SOName+".verified" {
		t.Errorf("%s holds %v, want only %s and its record (no temporary files)", dir, names(entries), SOName)
	}
	got, err := os.ReadFile(filepath.Join(dir, SOName))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, content) {
		t.Errorf("%s: content differs from the blob (sha256 %s, want %s)", filepath.Join(dir, SOName), sha256Hex(got), sum)
	}
}

func names(entries []os.DirEntry) []string {
	var s []string
	for _, e := range entries {
		s = append(s, e.Name())
	}
	return s
}
