package kernel

import (
	"encoding/json"
	"os"
	"path/filepath"
	"syscall"
)

// A cached kernel file is hashed in full once; later uses check a verification
// record instead: the device, inode, size, modification and change times
// the file had when its SHA-256 was found right. Any write to the file, a
// replacement or a copy changes at least one of them (the change time cannot
// be set from user space), and the file is then hashed again.

// stamp identifies one version of a file.
type stamp struct {
	Dev    uint64 `json:"dev"`
	Ino    uint64 `json:"ino"`
	Size   int64  `json:"size"`
	Mtime  int64  `json:"mtime_ns"`
	Ctime  int64  `json:"ctime_ns"`
	SHA256 string `json:"sha256"`
}

// stampOf is the stamp of the regular file at path (not following a final
// link), without a SHA-256; ok is false if there is none.
func stampOf(path string) (stamp, bool) {
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return stamp{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return stamp{}, false
	}
	return stamp{
		Dev: st.Dev, Ino: st.Ino, Size: st.Size,
		Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(),
	}, true
}

// recordedSum is the SHA-256 that record gives for the file at path, if the
// record is for the file as it is now.
func recordedSum(record, path string) (string, bool) {
	b, err := os.ReadFile(record)
	if err != nil {
		return "", false
	}
	var rec stamp
	if json.Unmarshal(b, &rec) != nil || rec.SHA256 == "" {
		return "", false
	}
	got, ok := stampOf(path)
	got.SHA256 = rec.SHA256
	if !ok || got != rec {
		return "", false
	}
	return rec.SHA256, true
}

// writeStamp records that the file at path has SHA-256 sum, atomically.
// The record is an optimisation: failing to write it is not an error.
func writeStamp(record, path, sum string) {
	st, ok := stampOf(path)
	if !ok {
		return
	}
	st.SHA256 = sum
	b, err := json.Marshal(st)
	if err != nil {
		return
	}
	if err := os.MkdirAll(filepath.Dir(record), 0o755); err != nil {
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(record), "."+filepath.Base(record)+".tmp-")
	if err != nil {
		return
	}
	_, werr := tmp.Write(b)
	if cerr := tmp.Close(); werr != nil || cerr != nil || os.Rename(tmp.Name(), record) != nil {
		os.Remove(tmp.Name())
	}
}

// stampFile is the verification record of the cached blob at path: beside it.
func stampFile(path string) string { return path + ".verified" }
