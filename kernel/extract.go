package kernel

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/klauspost/compress/zstd"
)

// SOName is the file name libkrun loads the kernel library by; a variant's
// file is staged under this name.
const SOName = "libkrunfw.so.5"

const (
	// maxDecoderMemory bounds the zstd decoder's window; a libkrunfw blob
	// is tens of MiB.
	maxDecoderMemory = 1 << 30
	// staleTemp is how old an abandoned temporary file in the cache must be
	// before an extraction removes it.
	staleTemp  = time.Hour
	tempPrefix = "." + SOName + ".tmp-"
)

// cachePath is where the blob with this SHA-256 lives in cacheDir.
func cachePath(cacheDir, sum string) string {
	return filepath.Join(cacheDir, "kernels", "sha256", sum, SOName)
}

// Extract writes the blob of embedded variant n into the content-addressed
// cache under cacheDir, <cacheDir>/kernels/sha256/<hex>/libkrunfw.so.5 (file
// mode 0644, directories 0755), and returns that path.
//
// A file already there is verified by SHA-256 and reused; a corrupt, partial
// or non-regular one is replaced. The file is written to a temporary file in
// the same directory, fsynced and renamed into place, so concurrent
// extractions by any number of goroutines and processes are safe and readers
// never see a partial file. The blob is decompressed and hashed as a stream;
// content that does not match the binary's recorded SHA-256 is an error
// (errdefs.ErrDataLoss: the binary is corrupt) and nothing is left behind.
func Extract(n Name, cacheDir string) (string, error) {
	if _, err := Parse(string(n)); err != nil {
		return "", err
	}
	b, ok := lookup(n)
	if !ok {
		return "", errorf(errdefs.ErrNotFound, "kernel variant %s is not embedded in this binary (this binary %s)", n, embedsPhrase())
	}
	if cacheDir == "" {
		return "", errorf(errdefs.ErrInvalidArgument, "extract kernel variant %s: no cache directory given", n)
	}
	cacheDir, err := filepath.Abs(cacheDir)
	if err != nil {
		return "", fmt.Errorf("extract kernel variant %s: %w", n, err)
	}
	path := cachePath(cacheDir, b.sha256)
	if cachedOK(path, b.sha256) {
		return path, nil
	}
	dir := filepath.Dir(path)
	if err := mkdirs(cacheDir, "kernels", "sha256", b.sha256); err != nil {
		return "", fmt.Errorf("extract kernel variant %s: %w", n, err)
	}
	removeStaleTemps(dir)
	if err := writeBlob(n, b, path); err != nil {
		return "", err
	}
	writeStamp(stampFile(path), path, b.sha256)
	return path, nil
}

// cachedOK reports whether path is a regular file (not a link) with the
// wanted SHA-256: by its verification record when the file is unchanged
// since it was last hashed, else by hashing it (and recording that).
func cachedOK(path, sum string) bool {
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return false
	}
	if got, ok := recordedSum(stampFile(path), path); ok && got == sum {
		return true
	}
	if Verify(path, sum) != nil {
		return false
	}
	writeStamp(stampFile(path), path, sum)
	return true
}

// mkdirs creates base (and its parents), then each of elems below it; the
// directories it creates itself get mode 0755 whatever the umask.
func mkdirs(base string, elems ...string) error {
	if err := os.MkdirAll(base, 0o755); err != nil {
		return err
	}
	dir := base
	for _, e := range elems {
		dir = filepath.Join(dir, e)
		err := os.Mkdir(dir, 0o755)
		switch {
		case err == nil:
			if err := os.Chmod(dir, 0o755); err != nil {
				return err
			}
		case errors.Is(err, fs.ErrExist):
			fi, serr := os.Stat(dir)
			if serr != nil {
				return serr
			}
			if !fi.IsDir() {
				return fmt.Errorf("%s exists and is not a directory", dir)
			}
		default:
			return err
		}
	}
	return nil
}

// writeBlob decompresses b into path atomically, checking its SHA-256.
func writeBlob(n Name, b blob, path string) (retErr error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return fmt.Errorf("extract kernel variant %s: %w", n, err)
	}
	defer func() {
		if retErr != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()

	dec, err := zstd.NewReader(bytes.NewReader(b.zst),
		zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxDecoderMemory))
	if err != nil {
		return fmt.Errorf("extract kernel variant %s: %w", n, err)
	}
	defer dec.Close()

	h := sha256.New()
	w := &trackedWriter{w: tmp}
	if _, err := io.Copy(io.MultiWriter(w, h), dec); err != nil {
		if w.err != nil {
			return fmt.Errorf("extract kernel variant %s: write %s: %w", n, tmp.Name(), w.err)
		}
		return errorf(errdefs.ErrDataLoss, "embedded blob of kernel variant %s is corrupt (decompress: %w); rebuild the binary", n, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != b.sha256 {
		return errorf(errdefs.ErrDataLoss, "embedded blob of kernel variant %s is corrupt: it decompresses to sha256 %s, but the binary records %s; rebuild the binary", n, got, b.sha256)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("extract kernel variant %s: %w", n, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("extract kernel variant %s: %w", n, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("extract kernel variant %s: %w", n, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("extract kernel variant %s: %w", n, err)
	}
	syncDir(dir)
	return nil
}

// trackedWriter remembers the error of its writer, so a failed copy can be
// told apart: a write error is the disk's, a read error the blob's.
type trackedWriter struct {
	w   io.Writer
	err error
}

func (t *trackedWriter) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	if err != nil {
		t.err = err
	}
	return n, err
}

// syncDir makes a rename in dir durable; failure only costs durability.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// removeStaleTemps removes temporary files left in dir by extractions that
// died more than staleTemp ago. Live extractions' files are younger.
func removeStaleTemps(dir string) {
	matches, _ := filepath.Glob(filepath.Join(dir, tempPrefix+"*"))
	for _, m := range matches {
		if fi, err := os.Lstat(m); err == nil && time.Since(fi.ModTime()) > staleTemp {
			os.Remove(m)
		}
	}
}

// Verify checks that path (following symbolic links) is a regular file whose
// SHA-256 is wantHex. A mismatch matches errdefs.ErrDataLoss; a malformed
// wantHex errdefs.ErrInvalidArgument.
func Verify(path, wantHex string) error {
	want, err := normHex(wantHex)
	if err != nil {
		return errorf(errdefs.ErrInvalidArgument, "verify %s: %w", path, err)
	}
	got, err := hashFile(path)
	if err != nil {
		return err
	}
	if got != want {
		return errorf(errdefs.ErrDataLoss, "kernel file %s has sha256 %s, want %s", path, got, want)
	}
	return nil
}

// hashes counts hashFile's calls (tests: a verified file is not hashed again).
var hashes atomic.Int64

// hashFile returns the hex SHA-256 of the regular file at path. Its errors
// match errdefs.ErrNotFound (missing), errdefs.ErrPermissionDenied
// (unreadable) or errdefs.ErrInvalidArgument (a directory, not a regular
// file, empty), each also matching the underlying fs error where there is one.
func hashFile(path string) (string, error) {
	hashes.Add(1)
	// O_NONBLOCK: opening a FIFO must not hang; it is refused below.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return "", errorf(errdefs.ErrNotFound, "%w", err)
		case errors.Is(err, fs.ErrPermission):
			return "", errorf(errdefs.ErrPermissionDenied, "%w", err)
		}
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	switch {
	case fi.IsDir():
		return "", errorf(errdefs.ErrInvalidArgument, "%s is a directory, not a %s file", path, SOName)
	case !fi.Mode().IsRegular():
		return "", errorf(errdefs.ErrInvalidArgument, "%s is not a regular file (%s)", path, fi.Mode().Type())
	case fi.Size() == 0:
		return "", errorf(errdefs.ErrInvalidArgument, "%s is empty", path)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return "", errorf(errdefs.ErrPermissionDenied, "read %s: %w", path, err)
		}
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
