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
	"time"
)

// busyboxRun is the busybox image's run configuration (BusyboxImage's).
var busyboxRun = Config{Cmd: []string{"sh"}}

// BusyboxDockerArchive writes the busybox image (BusyboxImage's layer and
// run configuration) to out in the format `docker save` writes and `docker
// load` reads (Docker 20.10): manifest.json naming the config and the layers
// under repoTag ("name:tag"), repositories, the image config as
// <hex of its digest>.json, and the layer in <layer id>/ with layer.tar,
// VERSION and the layer's v1 json. The layer id is the SHA-256 of that v1
// json without its id plus the layer's diff id, the way Docker derives a top
// layer's id (docker load reads the layers from manifest.json and does not
// check it). The archive is written under a temporary name renamed into
// place.
func BusyboxDockerArchive(busybox, out, repoTag string) error {
	i := strings.LastIndex(repoTag, ":")
	if i <= 0 || i == len(repoTag)-1 || strings.Contains(repoTag[i:], "/") {
		return fmt.Errorf("docker archive: %q is not name:tag", repoTag)
	}
	repo, tag := repoTag[:i], repoTag[i+1:]
	gz, diffID, err := busyboxLayer(busybox, false)
	if err != nil {
		return err
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return err
	}
	layer, err := io.ReadAll(zr)
	if err != nil {
		return err
	}
	cfg, err := configBlob(busyboxRun, []string{diffID})
	if err != nil {
		return err
	}
	cfgName := strings.TrimPrefix(digest(cfg), "sha256:") + ".json"

	var img struct {
		Config json.RawMessage `json:"config"`
	}
	if err := json.Unmarshal(cfg, &img); err != nil {
		return err
	}
	v1 := map[string]any{
		"created":      time.Unix(0, 0).UTC().Format(time.RFC3339),
		"architecture": "amd64",
		"os":           "linux",
		"config":       img.Config,
		// The config of the container a build's last step ran in: none.
		"container_config": map[string]any{},
		"layer_id":         diffID,
	}
	b, err := json.Marshal(v1)
	if err != nil {
		return err
	}
	id := strings.TrimPrefix(digest(b), "sha256:")
	delete(v1, "layer_id")
	v1["id"] = id
	v1json, err := json.Marshal(v1)
	if err != nil {
		return err
	}
	manifest, err := json.Marshal([]map[string]any{{
		"Config":   cfgName,
		"RepoTags": []string{repoTag},
		"Layers":   []string{id + "/layer.tar"},
	}})
	if err != nil {
		return err
	}
	repositories, err := json.Marshal(map[string]map[string]string{repo: {tag: id}})
	if err != nil {
		return err
	}
	return writeArchive(out, map[string][]byte{
		id + "/VERSION":   []byte("1.0"),
		id + "/json":      v1json,
		id + "/layer.tar": layer,
		cfgName:           cfg,
		"manifest.json":   manifest,
		"repositories":    repositories,
	})
}

// writeArchive writes files (and their directories) as a tar archive to
// out, through a temporary name renamed into place.
func writeArchive(out string, files map[string][]byte) error {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := writeFiles(tw, files); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*")
	if err != nil {
		return err
	}
	if _, err := f.Write(b.Bytes()); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), out)
}
