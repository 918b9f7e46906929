package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"
)

// sums is SHA256SUMS over files, sorted by path, in the format
// `sha256sum -c` reads ("HEX  PATH", paths relative to the top directory).
func sums(files []file) []byte {
	sorted := append([]file(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].path < sorted[j].path })
	var b bytes.Buffer
	for _, f := range sorted {
		s := sha256.Sum256(f.data)
		fmt.Fprintf(&b, "%s  %s\n", hex.EncodeToString(s[:]), f.path)
	}
	return b.Bytes()
}

// archive is the gzip-compressed tar of files and their SHA256SUMS under the
// directory top, with every directory they need. Entries are in path order
// (a directory before what it holds), each owned by root (0:0), with mtime
// epoch and the file's mode; the gzip header carries no name or time. It
// depends on nothing but its arguments.
func archive(top string, epoch int64, files []file) ([]byte, error) {
	all := append([]file(nil), files...)
	seen := map[string]bool{}
	for _, f := range all {
		if f.path == sumsName {
			return nil, fmt.Errorf("%s is made by archive, not passed in", sumsName)
		}
		if seen[f.path] {
			return nil, fmt.Errorf("%s twice", f.path)
		}
		if f.path == "" || path.IsAbs(f.path) || path.Clean(f.path) != f.path || strings.HasPrefix(f.path, "../") {
			return nil, fmt.Errorf("file path %q is not a clean relative path", f.path)
		}
		seen[f.path] = true
	}
	all = append(all, file{sumsName, 0o644, sums(files)})

	type entry struct {
		name string // below top; directories end in "/"
		f    *file
	}
	dirs := map[string]bool{"": true}
	var entries []entry
	for i := range all {
		for d := path.Dir(all[i].path); d != "."; d = path.Dir(d) {
			dirs[d+"/"] = true
		}
		entries = append(entries, entry{all[i].path, &all[i]})
	}
	for d := range dirs {
		entries = append(entries, entry{d, nil})
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })

	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	mtime := time.Unix(epoch, 0)
	for _, e := range entries {
		h := &tar.Header{
			Name:    top + "/" + e.name,
			Uid:     0,
			Gid:     0,
			Uname:   "root",
			Gname:   "root",
			ModTime: mtime,
		}
		if e.f == nil {
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		} else {
			if m := e.f.mode.Perm(); m != 0o755 && m != 0o644 {
				return nil, fmt.Errorf("%s: mode %v: release files are 0755 or 0644", e.f.path, m)
			}
			h.Typeflag, h.Mode, h.Size = tar.TypeReg, int64(e.f.mode.Perm()), int64(len(e.f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("tar %s: %w", h.Name, err)
		}
		if e.f != nil {
			if _, err := tw.Write(e.f.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
