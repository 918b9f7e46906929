package crid

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"strings"
)

// SetCmd rewrites an OCI image-layout archive of one image so that its
// config's Cmd is cmd (new config, manifest and index digests).
func SetCmd(archive string, cmd []string) error {
	b, err := os.ReadFile(archive)
	if err != nil {
		return err
	}
	files := map[string][]byte{}
	headers := map[string]*tar.Header{}
	var order []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return err
		}
		files[h.Name] = data
		headers[h.Name] = h
		order = append(order, h.Name)
	}
	blob := func(d string) string { return "blobs/sha256/" + strings.TrimPrefix(d, "sha256:") }
	put := func(data []byte) string {
		sum := sha256.Sum256(data)
		d := "sha256:" + hex.EncodeToString(sum[:])
		if _, ok := files[blob(d)]; !ok {
			order = append(order, blob(d))
		}
		files[blob(d)] = data
		return d
	}
	var index map[string]any
	if err := json.Unmarshal(files["index.json"], &index); err != nil {
		return err
	}
	mdesc := index["manifests"].([]any)[0].(map[string]any)
	var manifest map[string]any
	if err := json.Unmarshal(files[blob(mdesc["digest"].(string))], &manifest); err != nil {
		return err
	}
	cdesc := manifest["config"].(map[string]any)
	var cfg map[string]any
	if err := json.Unmarshal(files[blob(cdesc["digest"].(string))], &cfg); err != nil {
		return err
	}
	cfg["config"].(map[string]any)["Cmd"] = cmd
	cb, _ := json.Marshal(cfg)
	cdesc["digest"], cdesc["size"] = put(cb), len(cb)
	mb, _ := json.Marshal(manifest)
	mdesc["digest"], mdesc["size"] = put(mb), len(mb)
	files["index.json"], _ = json.Marshal(index)

	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for _, name := range order {
		h := headers[name]
		if h == nil || h.Typeflag == tar.TypeReg {
			h = &tar.Header{Name: name, Mode: 0o644, Size: int64(len(files[name])), Typeflag: tar.TypeReg}
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write(files[name]); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return os.WriteFile(archive, out.Bytes(), 0o644)
}
