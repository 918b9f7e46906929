// Command pack compresses a libkrunfw.so.5 for embedding by package kernel:
//
//	go run ./kernel/pack -src /path/to/libkrunfw.so.5 -out kernel/blobs/lean [-version 5.5.0]
//
// It writes <out>/libkrunfw.so.5.zst (zstd, best compression) and
// <out>/libkrunfw.so.5.sha256 (hex SHA-256 of the uncompressed file, then the
// version if given), each atomically (temporary file, fsync, rename). When
// the pair already there matches the source it rewrites nothing.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
)

const (
	soName  = "libkrunfw.so.5"
	zstName = soName + ".zst"
	shaName = soName + ".sha256"
)

func main() {
	src := flag.String("src", "", "the libkrunfw.so.5 to pack (required)")
	out := flag.String("out", "", "output directory, e.g. kernel/blobs/lean (required)")
	version := flag.String("version", "", "version string recorded after the sha256 (optional)")
	flag.Parse()
	if *src == "" || *out == "" || flag.NArg() != 0 || strings.ContainsAny(*version, "\n\r") {
		fmt.Fprintln(os.Stderr, "usage: pack -src FILE -out DIR [-version STRING]")
		os.Exit(2)
	}
	changed, err := pack(*src, *out, *version)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pack:", err)
		os.Exit(1)
	}
	if changed {
		fmt.Printf("pack: wrote %s and %s\n", filepath.Join(*out, zstName), filepath.Join(*out, shaName))
	} else {
		fmt.Printf("pack: %s is up to date\n", *out)
	}
}

// pack writes the .zst and .sha256 of src into dir, unless they already
// match src; it reports whether it wrote them.
func pack(src, dir, version string) (bool, error) {
	sum, err := hashFile(src)
	if err != nil {
		return false, err
	}
	meta := sum + "\n"
	if version != "" {
		meta = sum + "  " + version + "\n"
	}
	if upToDate(dir, sum, meta) {
		return false, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	f, err := os.Open(src)
	if err != nil {
		return false, err
	}
	defer f.Close()
	// The .zst goes first: a pair torn by a crash has an old .sha256, which
	// upToDate and the kernel package's checks both refuse.
	h := sha256.New()
	err = writeAtomic(filepath.Join(dir, zstName), func(w io.Writer) error {
		enc, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
		if err != nil {
			return err
		}
		if _, err := io.Copy(enc, io.TeeReader(f, h)); err != nil {
			enc.Close()
			return err
		}
		return enc.Close()
	})
	if err != nil {
		return false, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		return false, fmt.Errorf("%s changed while packing it", src)
	}
	err = writeAtomic(filepath.Join(dir, shaName), func(w io.Writer) error {
		_, err := io.WriteString(w, meta)
		return err
	})
	return err == nil, err
}

// upToDate reports whether dir holds a .sha256 equal to meta and a .zst that
// decompresses to content with SHA-256 sum.
func upToDate(dir, sum, meta string) bool {
	old, err := os.ReadFile(filepath.Join(dir, shaName))
	if err != nil || string(old) != meta {
		return false
	}
	zst, err := os.ReadFile(filepath.Join(dir, zstName))
	if err != nil {
		return false
	}
	dec, err := zstd.NewReader(bytes.NewReader(zst), zstd.WithDecoderConcurrency(1))
	if err != nil {
		return false
	}
	defer dec.Close()
	h := sha256.New()
	if _, err := io.Copy(h, dec); err != nil {
		return false
	}
	return hex.EncodeToString(h.Sum(nil)) == sum
}

func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() || fi.Size() == 0 {
		return "", fmt.Errorf("%s is not a non-empty regular file", path)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// writeAtomic writes path through fill: a temporary file in the same
// directory, mode 0644, fsynced, then renamed over path.
func writeAtomic(path string, fill func(io.Writer) error) (retErr error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := fill(tmp); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	// Make the rename durable; some file systems cannot sync a directory.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
