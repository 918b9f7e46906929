package ocitest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// DirLayer makes a layer of the tree under dir: its directories, regular
// files and symbolic links, owned by root, with their permission bits and
// no timestamps; anything else (devices, sockets) is an error. It returns
// the gzip-compressed layer and the digest of its uncompressed tar (the
// diff id).
func DirLayer(dir string) ([]byte, string, error) {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("layer of %s: %w", dir, err)
	}
	sort.Strings(paths)
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, p := range paths {
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return nil, "", err
		}
		h := &tar.Header{Name: filepath.ToSlash(rel), Mode: int64(fi.Mode().Perm()), ModTime: time.Unix(0, 0)}
		switch {
		case fi.IsDir():
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
		case fi.Mode().IsRegular():
			h.Typeflag, h.Size = tar.TypeReg, fi.Size()
		case fi.Mode()&fs.ModeSymlink != 0:
			if h.Linkname, err = os.Readlink(p); err != nil {
				return nil, "", err
			}
			h.Typeflag, h.Mode = tar.TypeSymlink, 0o777
		default:
			return nil, "", fmt.Errorf("layer of %s: %s is not a directory, regular file or symbolic link (%s)", dir, rel, fi.Mode().Type())
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, "", err
		}
		if h.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				return nil, "", err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return nil, "", fmt.Errorf("layer of %s: %s: %w", dir, rel, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return nil, "", err
	}
	if err := zw.Close(); err != nil {
		return nil, "", err
	}
	return gz.Bytes(), digest(raw.Bytes()), nil
}

// AddDirLayer rewrites an OCI image-layout archive of one image (as
// BusyboxImage writes it) with the tree under dir as a new top layer: a new
// layer blob, its diff id appended to the config, new config, manifest and
// index.
func AddDirLayer(archive, dir string) error {
	layer, diffID, err := DirLayer(dir)
	if err != nil {
		return err
	}
	files, err := readArchive(archive)
	if err != nil {
		return fmt.Errorf("%s: %w", archive, err)
	}
	blob := func(d string) string { return "blobs/sha256/" + strings.TrimPrefix(d, "sha256:") }
	put := func(b []byte) string {
		d := digest(b)
		files[blob(d)] = b
		return d
	}
	var index struct {
		Manifests []descriptor `json:"manifests"`
	}
	var indexAll map[string]any
	if err := json.Unmarshal(files["index.json"], &indexAll); err != nil {
		return fmt.Errorf("%s: index.json: %w", archive, err)
	}
	if err := json.Unmarshal(files["index.json"], &index); err != nil || len(index.Manifests) != 1 {
		return fmt.Errorf("%s: index.json must name one manifest (%v)", archive, err)
	}
	var manifest struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Config        descriptor   `json:"config"`
		Layers        []descriptor `json:"layers"`
	}
	if err := json.Unmarshal(files[blob(index.Manifests[0].Digest)], &manifest); err != nil {
		return fmt.Errorf("%s: manifest: %w", archive, err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(files[blob(manifest.Config.Digest)], &cfg); err != nil {
		return fmt.Errorf("%s: config: %w", archive, err)
	}
	rootfs, _ := cfg["rootfs"].(map[string]any)
	ids, _ := rootfs["diff_ids"].([]any)
	if rootfs == nil || ids == nil {
		return fmt.Errorf("%s: the config has no rootfs.diff_ids", archive)
	}
	rootfs["diff_ids"] = append(ids, diffID)
	delete(files, blob(manifest.Config.Digest))
	delete(files, blob(index.Manifests[0].Digest))
	cb, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	manifest.Config.Digest, manifest.Config.Size = put(cb), int64(len(cb))
	manifest.Layers = append(manifest.Layers, descriptor{MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", Digest: put(layer), Size: int64(len(layer))})
	mb, err := json.Marshal(manifest)
	if err != nil {
		return err
	}
	index.Manifests[0].Digest, index.Manifests[0].Size = put(mb), int64(len(mb))
	indexAll["manifests"] = index.Manifests
	if files["index.json"], err = json.Marshal(indexAll); err != nil {
		return err
	}
	f, err := os.Create(archive)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	if err := writeFiles(tw, files); err != nil {
		f.Close()
		return err
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readArchive returns the regular files of a tar archive by name.
func readArchive(path string) (map[string][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if files[h.Name], err = io.ReadAll(tr); err != nil {
			return nil, err
		}
	}
}
