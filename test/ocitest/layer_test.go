package ocitest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A directory's tree becomes the image's top layer: the archive then names
// two layers, each blob's digest is its content's, and the new layer holds
// the tree's files, directories and links as they are.
func TestAddDirLayer(t *testing.T) {
	busybox := filepath.Join(t.TempDir(), "busybox")
	// A stand-in that answers --list as busybox does.
	if err := os.WriteFile(busybox, []byte("#!/bin/sh\necho sh\necho true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, d := range []string{"usr/sbin", "usr/lib"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "usr/sbin/tool"), []byte("tool"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("tool", filepath.Join(dir, "usr/sbin/alias")); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "img.tar")
	if err := BusyboxImage(busybox, archive, "example.com/x:test"); err != nil {
		t.Fatal(err)
	}
	if err := AddDirLayer(archive, dir); err != nil {
		t.Fatal(err)
	}
	files, err := readArchive(archive)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if d, ok := strings.CutPrefix(name, "blobs/sha256/"); ok && digest(b) != "sha256:"+d {
			t.Errorf("blob %s has digest %s", name, digest(b))
		}
	}
	blob := func(d string) []byte { return files["blobs/sha256/"+strings.TrimPrefix(d, "sha256:")] }
	var index struct{ Manifests []descriptor }
	var manifest struct {
		Config descriptor
		Layers []descriptor
	}
	var cfg struct {
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(files["index.json"], &index); err != nil || len(index.Manifests) != 1 {
		t.Fatalf("index: %v %s", err, files["index.json"])
	}
	if index.Manifests[0].Annotations["io.containerd.image.name"] != "example.com/x:test" {
		t.Errorf("the index lost the image name: %s", files["index.json"])
	}
	if err := json.Unmarshal(blob(index.Manifests[0].Digest), &manifest); err != nil || len(manifest.Layers) != 2 {
		t.Fatalf("manifest: %v, %d layers", err, len(manifest.Layers))
	}
	if err := json.Unmarshal(blob(manifest.Config.Digest), &cfg); err != nil || len(cfg.RootFS.DiffIDs) != 2 {
		t.Fatalf("config: %v, diff ids %v", err, cfg.RootFS.DiffIDs)
	}
	if len(files) != 6 { // oci-layout, index.json, config, manifest, two layers
		t.Errorf("%d files in the archive, want 6 (the old config and manifest gone)", len(files))
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob(manifest.Layers[1].Digest)))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(zr)
	if digest(raw) != cfg.RootFS.DiffIDs[1] {
		t.Errorf("the new layer's diff id %s is not its tar's digest %s", cfg.RootFS.DiffIDs[1], digest(raw))
	}
	var got []string
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s %c %s %o", h.Name, h.Typeflag, h.Linkname, h.Mode))
	}
	want := []string{"usr/ 5  755", "usr/lib/ 5  755", "usr/sbin/ 5  755", "usr/sbin/alias 2 tool 777", "usr/sbin/tool 0  750"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("layer entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
