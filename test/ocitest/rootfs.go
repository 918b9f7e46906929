package ocitest

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// RootfsImage writes an OCI image-layout tar archive to out holding one
// image, name, whose one layer is the tar archive rootfsTar as it is
// (uncompressed: its digest is its diff id), so that a root filesystem made
// by a tool that writes tar (mmdebstrap: the dind test image) keeps its
// owners, modes, hard links and extended attributes exactly. The layer is
// streamed from the file, never held in memory, and the archive is written
// under a temporary name renamed into place.
func RootfsImage(rootfsTar, out, name string, cfg Config) (retErr error) {
	src, err := os.Open(rootfsTar)
	if err != nil {
		return fmt.Errorf("root filesystem: %w", err)
	}
	defer src.Close()
	h := sha256.New()
	size, err := io.Copy(h, src)
	if err != nil {
		return fmt.Errorf("read %s: %w", rootfsTar, err)
	}
	layer := descriptor{MediaType: "application/vnd.oci.image.layer.v1.tar", Digest: "sha256:" + hex.EncodeToString(h.Sum(nil)), Size: size}
	cb, err := configBlob(cfg, []string{layer.Digest})
	if err != nil {
		return err
	}
	blobs := map[string][]byte{}
	add := func(media string, b []byte) descriptor {
		d := digest(b)
		blobs[d] = b
		return descriptor{MediaType: media, Digest: d, Size: int64(len(b))}
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     ManifestType,
		"config":        add("application/vnd.oci.image.config.v1+json", cb),
		"layers":        []descriptor{layer},
	})
	if err != nil {
		return err
	}
	mDesc := add(ManifestType, manifest)
	mDesc.Platform = &platform{Architecture: "amd64", OS: "linux"}
	mDesc.Annotations = map[string]string{
		"io.containerd.image.name":          name,
		"org.opencontainers.image.ref.name": name[strings.LastIndex(name, ":")+1:],
	}
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     []descriptor{mDesc},
	})
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`),
		"index.json": index,
	}
	for d, b := range blobs {
		files[blobPath(d)] = b
	}

	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*")
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	tw := tar.NewWriter(bw)
	if err := writeFiles(tw, files); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: blobPath(layer.Digest), Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: time.Unix(0, 0)}); err != nil {
		return err
	}
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if n, err := io.Copy(tw, src); err != nil || n != size {
		return fmt.Errorf("copy %s into the image: %d of %d bytes: %v", rootfsTar, n, size, err)
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), out)
}

func blobPath(digest string) string { return "blobs/sha256/" + strings.TrimPrefix(digest, "sha256:") }
