package ocitest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeBusybox is a stand-in for a static busybox: busyboxLayer runs it only
// for --list.
func fakeBusybox(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "busybox")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho busybox; echo sh; echo echo; echo httpd\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// readTar returns an archive's regular files by name, and its headers.
func readTar(t *testing.T, r io.Reader) (map[string][]byte, map[string]*tar.Header) {
	t.Helper()
	files, hdrs := map[string][]byte{}, map[string]*tar.Header{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, hdrs
		}
		if err != nil {
			t.Fatal(err)
		}
		hdrs[h.Name] = h
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = b
		}
	}
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func jsonOf(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
}

// runConfig is an image config's "config", as JSON has it.
type runConfig struct {
	Env, Entrypoint, Cmd []string
	WorkingDir           string
}

type ociImage struct {
	index struct {
		Manifests []struct {
			Digest      string
			Annotations map[string]string
		}
	}
	manifest struct {
		Config descriptor
		Layers []descriptor
	}
	config struct {
		Config runConfig
		Rootfs struct {
			DiffIDs []string `json:"diff_ids"`
		}
	}
	layer []byte
}

// readLayout checks an OCI layout archive's digests and sizes and returns
// its one image.
func readLayout(t *testing.T, archive string) ociImage {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files, _ := readTar(t, f)
	blob := func(d descriptor) []byte {
		t.Helper()
		b, ok := files["blobs/sha256/"+strings.TrimPrefix(d.Digest, "sha256:")]
		if !ok {
			t.Fatalf("blob %s missing", d.Digest)
		}
		if sum(b) != d.Digest || int64(len(b)) != d.Size {
			t.Fatalf("blob %s: digest %s, size %d; want size %d", d.Digest, sum(b), len(b), d.Size)
		}
		return b
	}
	var img ociImage
	if string(files["oci-layout"]) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout = %q", files["oci-layout"])
	}
	jsonOf(t, files["index.json"], &img.index)
	if len(img.index.Manifests) != 1 {
		t.Fatalf("index has %d manifests", len(img.index.Manifests))
	}
	m := img.index.Manifests[0]
	mb := files["blobs/sha256/"+strings.TrimPrefix(m.Digest, "sha256:")]
	if sum(mb) != m.Digest {
		t.Fatalf("manifest digest %s, want %s", sum(mb), m.Digest)
	}
	jsonOf(t, mb, &img.manifest)
	jsonOf(t, blob(img.manifest.Config), &img.config)
	if len(img.manifest.Layers) != 1 {
		t.Fatalf("manifest has %d layers", len(img.manifest.Layers))
	}
	img.layer = blob(img.manifest.Layers[0])
	return img
}

func TestRootfsImage(t *testing.T) {
	dir := t.TempDir()
	// A root filesystem as mmdebstrap writes it: owners, a hard link, an
	// extended attribute, a symlink.
	var rootfs bytes.Buffer
	tw := tar.NewWriter(&rootfs)
	body := []byte("#!/bin/sh\necho dockerd\n")
	for _, h := range []*tar.Header{
		{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./usr/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./usr/sbin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./usr/sbin/dockerd", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(body)), Uid: 0,
			PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "\x01\x00\x00\x02"}},
		{Name: "./usr/sbin/dockerd2", Typeflag: tar.TypeLink, Linkname: "./usr/sbin/dockerd"},
		{Name: "./home/", Typeflag: tar.TypeDir, Mode: 0o750, Uid: 1000, Gid: 1000},
		{Name: "./bin", Typeflag: tar.TypeSymlink, Linkname: "usr/bin"},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "rootfs.tar")
	if err := os.WriteFile(in, rootfs.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Env: []string{"PATH=/usr/sbin:/usr/bin"}, Entrypoint: []string{"dockerd"}, WorkingDir: "/"}
	out := filepath.Join(dir, "image.tar")
	if err := RootfsImage(in, out, "docker.io/boxlite/dind:test", cfg); err != nil {
		t.Fatal(err)
	}
	img := readLayout(t, out)
	if !bytes.Equal(img.layer, rootfs.Bytes()) {
		t.Error("the layer is not the root filesystem's tar as it was")
	}
	if l := img.manifest.Layers[0]; l.MediaType != "application/vnd.oci.image.layer.v1.tar" {
		t.Errorf("layer media type %s, want the uncompressed tar's", l.MediaType)
	}
	if got := img.config.Rootfs.DiffIDs; len(got) != 1 || got[0] != sum(rootfs.Bytes()) {
		t.Errorf("diff ids %v, want [%s]", got, sum(rootfs.Bytes()))
	}
	if got := img.config.Config; got.Entrypoint[0] != "dockerd" || got.Env[0] != cfg.Env[0] || got.WorkingDir != "/" {
		t.Errorf("config %+v, want %+v", got, cfg)
	}
	if a := img.index.Manifests[0].Annotations; a["io.containerd.image.name"] != "docker.io/boxlite/dind:test" || a["org.opencontainers.image.ref.name"] != "test" {
		t.Errorf("annotations %v", a)
	}
	// Nothing is left beside the archive (it is written under a temporary
	// name and renamed).
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("%d entries in %s, want rootfs.tar and image.tar", len(ents), dir)
	}
	if err := RootfsImage(filepath.Join(dir, "missing.tar"), out, "x:y", cfg); err == nil {
		t.Error("RootfsImage of a missing tar succeeded")
	}
}

func TestBusyboxImage(t *testing.T) {
	out := filepath.Join(t.TempDir(), "busybox.tar")
	if err := BusyboxImage(fakeBusybox(t), out, ImageName); err != nil {
		t.Fatal(err)
	}
	img := readLayout(t, out)
	zr, err := gzip.NewReader(bytes.NewReader(img.layer))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if got := img.config.Rootfs.DiffIDs; len(got) != 1 || got[0] != sum(raw) {
		t.Errorf("diff ids %v, want [%s]", got, sum(raw))
	}
	_, hdrs := readTar(t, bytes.NewReader(raw))
	for _, n := range []string{"bin/busybox", "bin/sh", "bin/httpd", "etc/passwd", "tmp/"} {
		if hdrs[n] == nil {
			t.Errorf("layer lacks %s", n)
		}
	}
	if hdrs["bin/sh"] != nil && hdrs["bin/sh"].Linkname != "busybox" {
		t.Errorf("bin/sh links to %q", hdrs["bin/sh"].Linkname)
	}
}

func TestBusyboxDockerArchive(t *testing.T) {
	bb := fakeBusybox(t)
	out := filepath.Join(t.TempDir(), "busybox-docker.tar")
	if err := BusyboxDockerArchive(bb, out, "busybox:latest"); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files, _ := readTar(t, f)
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	jsonOf(t, files["manifest.json"], &manifest)
	if len(manifest) != 1 || len(manifest[0].Layers) != 1 || len(manifest[0].RepoTags) != 1 || manifest[0].RepoTags[0] != "busybox:latest" {
		t.Fatalf("manifest.json = %s", files["manifest.json"])
	}
	m := manifest[0]
	cfg, ok := files[m.Config]
	if !ok || sum(cfg) != "sha256:"+strings.TrimSuffix(m.Config, ".json") {
		t.Fatalf("config %s missing or not named by its digest", m.Config)
	}
	var c struct {
		Config runConfig
		Rootfs struct {
			Type    string
			DiffIDs []string `json:"diff_ids"`
		}
	}
	jsonOf(t, cfg, &c)
	layer := files[m.Layers[0]]
	if c.Rootfs.Type != "layers" || len(c.Rootfs.DiffIDs) != 1 || c.Rootfs.DiffIDs[0] != sum(layer) {
		t.Errorf("config rootfs %+v; the layer's digest is %s", c.Rootfs, sum(layer))
	}
	if len(c.Config.Cmd) != 1 || c.Config.Cmd[0] != "sh" || len(c.Config.Env) != 1 || !strings.HasPrefix(c.Config.Env[0], "PATH=") {
		t.Errorf("config %+v", c.Config)
	}
	gz, _, err := busyboxLayer(bb, false)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	want, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(layer, want) {
		t.Error("layer.tar is not the busybox layer")
	}
	id := strings.TrimSuffix(m.Layers[0], "/layer.tar")
	var repos map[string]map[string]string
	jsonOf(t, files["repositories"], &repos)
	if repos["busybox"]["latest"] != id {
		t.Errorf("repositories = %s, want busybox:latest → %s", files["repositories"], id)
	}
	if string(files[id+"/VERSION"]) != "1.0" {
		t.Errorf("VERSION = %q", files[id+"/VERSION"])
	}
	var v1 map[string]any
	jsonOf(t, files[id+"/json"], &v1)
	if v1["id"] != id || v1["os"] != "linux" {
		t.Errorf("v1 json = %s", files[id+"/json"])
	}
	// Deterministic: the same input gives the same archive.
	again := filepath.Join(t.TempDir(), "again.tar")
	if err := BusyboxDockerArchive(bb, again, "busybox:latest"); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(out)
	b, _ := os.ReadFile(again)
	if !bytes.Equal(a, b) {
		t.Error("two archives of the same image differ")
	}
}

func TestBusyboxDockerArchiveRefusesBadTags(t *testing.T) {
	for _, tag := range []string{"busybox", ":latest", "busybox:", "localhost:5000/busybox"} {
		t.Run(tag, func(t *testing.T) {
			if err := BusyboxDockerArchive(fakeBusybox(t), filepath.Join(t.TempDir(), "x.tar"), tag); err == nil {
				t.Errorf("BusyboxDockerArchive(%q) succeeded", tag)
			}
		})
	}
}
