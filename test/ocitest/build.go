package ocitest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"path"
	"sort"
	"time"
)

// Layer is a gzip-compressed layer tar and the digest of the uncompressed
// tar (its diff id).
type Layer struct {
	Blob   []byte
	DiffID string
}

// BusyboxLayer is the one layer of BusyboxImage (a static busybox at
// /bin/busybox, /etc/passwd, /etc/group, /tmp), with each applet a hard link
// to /bin/busybox as in upstream busybox images: masking one applet's path
// (a bind mount over it) masks that name only, not busybox.
func BusyboxLayer(busybox string) (Layer, error) {
	blob, diffID, err := busyboxLayer(busybox, true)
	return Layer{Blob: blob, DiffID: diffID}, err
}

// File is a regular file of FilesLayer.
type File struct {
	Data string
	Mode int64 // 0644 when 0
}

// FilesLayer is a layer holding the given regular files (by path relative
// to the root, e.g. "etc/passwd") and their parent directories.
func FilesLayer(files map[string]File) (Layer, error) {
	names := make([]string, 0, len(files))
	dirs := map[string]bool{}
	for n := range files {
		names = append(names, n)
		for d := path.Dir(n); d != "." && d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	sort.Strings(names)
	dirList := make([]string, 0, len(dirs))
	for d := range dirs {
		dirList = append(dirList, d)
	}
	sort.Strings(dirList)
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, d := range dirList {
		if err := tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(0, 0)}); err != nil {
			return Layer{}, err
		}
	}
	for _, n := range names {
		f := files[n]
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		if err := tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(f.Data)), ModTime: time.Unix(0, 0)}); err != nil {
			return Layer{}, err
		}
		if _, err := io.WriteString(tw, f.Data); err != nil {
			return Layer{}, err
		}
	}
	if err := tw.Close(); err != nil {
		return Layer{}, err
	}
	return gzipLayer(raw.Bytes())
}

func gzipLayer(raw []byte) (Layer, error) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(raw); err != nil {
		return Layer{}, err
	}
	if err := zw.Close(); err != nil {
		return Layer{}, err
	}
	return Layer{Blob: gz.Bytes(), DiffID: digest(raw)}, nil
}

// Config is what an image's config says about its process.
type Config struct {
	User       string
	Entrypoint []string
	Cmd        []string
	Env        []string // PATH is set when Env is empty
	WorkingDir string   // "/" when empty
	// ExposedPorts are "80/tcp" and the like.
	ExposedPorts []string
}

// Image is a built image: its manifest (an OCI image manifest) and every
// blob the manifest names, by digest.
type Image struct {
	Manifest []byte
	Digest   string // the manifest's
	Blobs    map[string][]byte
}

// ManifestType is the media type of Image.Manifest.
const ManifestType = "application/vnd.oci.image.manifest.v1+json"

// Build makes an amd64 Linux image of the layers (bottom first) and cfg.
func Build(cfg Config, layers ...Layer) (*Image, error) {
	diffIDs := make([]string, len(layers))
	for i, l := range layers {
		diffIDs[i] = l.DiffID
	}
	cb, err := configBlob(cfg, diffIDs)
	if err != nil {
		return nil, err
	}
	img := &Image{Blobs: map[string][]byte{}}
	add := func(media string, b []byte) descriptor {
		d := digest(b)
		img.Blobs[d] = b
		return descriptor{MediaType: media, Digest: d, Size: int64(len(b))}
	}
	cfgDesc := add("application/vnd.oci.image.config.v1+json", cb)
	layerDescs := make([]descriptor, len(layers))
	for i, l := range layers {
		layerDescs[i] = add("application/vnd.oci.image.layer.v1.tar+gzip", l.Blob)
	}
	m, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     ManifestType,
		"config":        cfgDesc,
		"layers":        layerDescs,
	})
	if err != nil {
		return nil, err
	}
	img.Manifest, img.Digest = m, digest(m)
	return img, nil
}

// configBlob is the OCI image config of an amd64 Linux image with cfg and
// the layers whose diff ids are diffIDs (bottom first).
func configBlob(cfg Config, diffIDs []string) ([]byte, error) {
	env := cfg.Env
	if len(env) == 0 {
		env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	wd := cfg.WorkingDir
	if wd == "" {
		wd = "/"
	}
	c := map[string]any{"Env": env, "WorkingDir": wd}
	if cfg.Cmd != nil {
		c["Cmd"] = cfg.Cmd
	}
	if cfg.Entrypoint != nil {
		c["Entrypoint"] = cfg.Entrypoint
	}
	if cfg.User != "" {
		c["User"] = cfg.User
	}
	if len(cfg.ExposedPorts) > 0 {
		ports := map[string]any{}
		for _, p := range cfg.ExposedPorts {
			ports[p] = map[string]any{}
		}
		c["ExposedPorts"] = ports
	}
	return json.Marshal(map[string]any{
		"created":      time.Unix(0, 0).UTC().Format(time.RFC3339),
		"architecture": "amd64",
		"os":           "linux",
		"config":       c,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
}
