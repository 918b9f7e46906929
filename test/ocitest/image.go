// Package ocitest builds small OCI images locally, for tests and the demo: no
// registry is reachable from the machines this project is tested on. It must
// not be imported by product code.
package ocitest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"
)

// ImageName is the name the busybox test image is imported under.
const ImageName = "docker.io/boxlite/busybox:test"

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *platform         `json:"platform,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

// BusyboxImage writes an OCI image-layout tar archive to out holding one
// layer: a static busybox at /bin/busybox with a symlink per applet, plus the
// few files a container expects (/etc/passwd, /etc/group, /tmp).
func BusyboxImage(busybox, out, name string) error {
	layer, diffID, err := busyboxLayer(busybox, false)
	if err != nil {
		return err
	}
	created := time.Unix(0, 0).UTC().Format(time.RFC3339)
	cfg, err := json.Marshal(map[string]any{
		"created":      created,
		"architecture": "amd64",
		"os":           "linux",
		"config": map[string]any{
			"Env":        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			"Cmd":        []string{"sh"},
			"WorkingDir": "/",
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{diffID}},
	})
	if err != nil {
		return err
	}
	blobs := map[string][]byte{}
	add := func(media string, b []byte) descriptor {
		d := digest(b)
		blobs[d] = b
		return descriptor{MediaType: media, Digest: d, Size: int64(len(b))}
	}
	cfgDesc := add("application/vnd.oci.image.config.v1+json", cfg)
	layerDesc := add("application/vnd.oci.image.layer.v1.tar+gzip", layer)
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        cfgDesc,
		"layers":        []descriptor{layerDesc},
	})
	if err != nil {
		return err
	}
	mDesc := add("application/vnd.oci.image.manifest.v1+json", manifest)
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

	f, err := os.Create(out)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	files := map[string][]byte{
		"oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`),
		"index.json": index,
	}
	for d, b := range blobs {
		files["blobs/sha256/"+strings.TrimPrefix(d, "sha256:")] = b
	}
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

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func writeFiles(tw *tar.Writer, files map[string][]byte) error {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	dirs := map[string]bool{}
	for _, n := range names {
		for i := 0; i < len(n); i++ {
			if n[i] == '/' && !dirs[n[:i]] {
				dirs[n[:i]] = true
				if err := tw.WriteHeader(&tar.Header{Name: n[:i] + "/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
					return err
				}
			}
		}
		if err := tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(files[n]))}); err != nil {
			return err
		}
		if _, err := tw.Write(files[n]); err != nil {
			return err
		}
	}
	return nil
}

// busyboxLayer returns the gzip-compressed layer and the digest of its
// uncompressed tar (the diff id). Applets are symlinks to /bin/busybox, or
// hard links with hardlinks (as in upstream busybox images).
func busyboxLayer(busybox string, hardlinks bool) ([]byte, string, error) {
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return nil, "", fmt.Errorf("read busybox: %w", err)
	}
	list, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return nil, "", fmt.Errorf("%s --list: %w", busybox, err)
	}
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	hdr := func(h *tar.Header) error { h.ModTime = time.Unix(0, 0); return tw.WriteHeader(h) }
	for _, d := range []string{"bin/", "dev/", "etc/", "proc/", "sys/", "root/", "run/", "var/", "var/run/"} {
		if err := hdr(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
			return nil, "", err
		}
	}
	if err := hdr(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}); err != nil {
		return nil, "", err
	}
	etc := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
	}
	for _, n := range []string{"etc/group", "etc/passwd"} {
		if err := hdr(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(etc[n]))}); err != nil {
			return nil, "", err
		}
		if _, err := io.WriteString(tw, etc[n]); err != nil {
			return nil, "", err
		}
	}
	if err := hdr(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin))}); err != nil {
		return nil, "", err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, "", err
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		h := &tar.Header{Name: "bin/" + applet, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}
		if hardlinks {
			h = &tar.Header{Name: "bin/" + applet, Typeflag: tar.TypeLink, Linkname: "bin/busybox", Mode: 0o755}
		}
		if err := hdr(h); err != nil {
			return nil, "", err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	diffID := digest(raw.Bytes())
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return nil, "", err
	}
	if err := zw.Close(); err != nil {
		return nil, "", err
	}
	return gz.Bytes(), diffID, nil
}
