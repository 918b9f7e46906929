package kernel

import (
	"os"
	"runtime/debug"
	"sync"
	"syscall"

	"github.com/containerd/errdefs"
)

// What booting a variant needs to know about its kernel (TSI, the most
// vCPUs), read once per file.

// fileID tells one version of a file from another without reading it.
type fileID struct {
	path       string
	dev, ino   uint64
	size       int64
	mtimeNanos int64
}

var (
	inspectedMu sync.Mutex
	inspected   = map[fileID]Features{}
)

// InspectCached is Inspect, remembered per file (path, device, inode, size
// and modification time): a VMM start asks for each sandbox, and reading a
// kernel image takes tens of milliseconds.
func InspectCached(path string) (Features, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Features{}, err
	}
	id := fileID{path: path, size: fi.Size(), mtimeNanos: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), st.Ino
	}
	inspectedMu.Lock()
	f, ok := inspected[id]
	inspectedMu.Unlock()
	if ok {
		return f, nil
	}
	f, err = Inspect(path)
	// Inspect read the whole image (14-20 MiB) into the heap; each shim
	// inspects once, at its sandbox's start, and then idles for the pod's
	// life: hand the pages back now rather than keep them resident.
	debug.FreeOSMemory()
	if err != nil {
		return Features{}, err
	}
	inspectedMu.Lock()
	inspected[id] = f
	inspectedMu.Unlock()
	return f, nil
}

// CheckCPUs refuses more vCPUs than kernel variant n (whose Features f are)
// brings up: CONFIG_NR_CPUS, where known. A guest with more would leave the
// rest idle while the host still runs a thread for each. The error matches
// errdefs.ErrInvalidArgument and names the limit and where it comes from.
func CheckCPUs(n Name, f Features, cpus int) error {
	if f.NRCPUs > 0 && cpus > f.NRCPUs {
		return errorf(errdefs.ErrInvalidArgument,
			"%d vCPUs: kernel variant %s brings up at most %d CPUs (%s); set vm.cpus (or the io.boxlite.cpus annotation) to %d or less",
			cpus, n, f.NRCPUs, f.NRCPUsFrom, f.NRCPUs)
	}
	return nil
}

// TSIPhrase says, for messages and logs, what is known of the kernel's TSI
// patch.
func (f Features) TSIPhrase() string {
	switch f.TSI {
	case Yes:
		return "has libkrunfw's TSI patch"
	case No:
		return "has no TSI patch"
	default:
		return "cannot be told to have the TSI patch or not"
	}
}
