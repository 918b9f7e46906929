package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

func TestPack(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "libkrunfw.so.5")
	content := make([]byte, 64<<10)
	rand.Read(content)
	content = append(content, bytes.Repeat([]byte("kernel"), 4096)...)
	if err := os.WriteFile(src, content, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(content)
	want := hex.EncodeToString(sum[:])
	out := filepath.Join(dir, "blobs", "lean")

	changed, err := pack(src, out, "5.5.0")
	if err != nil || !changed {
		t.Fatalf("pack = %v, %v; want true, nil", changed, err)
	}
	meta, err := os.ReadFile(filepath.Join(out, shaName))
	if err != nil {
		t.Fatal(err)
	}
	if string(meta) != want+"  5.5.0\n" {
		t.Errorf("%s = %q, want %q", shaName, meta, want+"  5.5.0\n")
	}
	zst, err := os.ReadFile(filepath.Join(out, zstName))
	if err != nil {
		t.Fatal(err)
	}
	dec, err := zstd.NewReader(bytes.NewReader(zst))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(dec)
	dec.Close()
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("decompressed .zst differs from source (err %v)", err)
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != 2 {
		t.Errorf("%s holds %d entries, want 2 (no temporary files)", out, len(entries))
	}

	// A second run with the same source rewrites nothing.
	before, _ := os.Stat(filepath.Join(out, zstName))
	time.Sleep(10 * time.Millisecond)
	if changed, err := pack(src, out, "5.5.0"); err != nil || changed {
		t.Fatalf("second pack = %v, %v; want false, nil", changed, err)
	}
	after, _ := os.Stat(filepath.Join(out, zstName))
	if !os.SameFile(before, after) || !before.ModTime().Equal(after.ModTime()) {
		t.Error("second pack rewrote an up-to-date .zst")
	}

	// A damaged .zst is rewritten.
	if err := os.WriteFile(filepath.Join(out, zstName), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if changed, err := pack(src, out, "5.5.0"); err != nil || !changed {
		t.Fatalf("pack over damaged .zst = %v, %v; want true, nil", changed, err)
	}

	// An empty or missing source is refused.
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o644)
	if _, err := pack(empty, out, ""); err == nil {
		t.Error("pack of an empty file succeeded")
	}
	if _, err := pack(filepath.Join(dir, "missing"), out, ""); err == nil {
		t.Error("pack of a missing file succeeded")
	}
}
