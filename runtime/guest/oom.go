package guest

import (
	"log"
	"os"
	"path/filepath"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// oomWatcher watches the containers' memory.events with inotify (the kernel
// signals changes to it as IN_MODIFY) and calls check with the container id.
type oomWatcher struct {
	f     *os.File
	fd    int // f's descriptor (f.Fd() would make it blocking)
	mu    sync.Mutex
	wds   map[int32]string
	check func(id string)
}

func newOOMWatcher(check func(id string)) *oomWatcher {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		log.Printf("inotify: %v: OOM events only at process exit", err)
		return &oomWatcher{check: check}
	}
	w := &oomWatcher{f: os.NewFile(uintptr(fd), "inotify"), fd: fd, wds: map[int32]string{}, check: check}
	go w.run()
	return w
}

func (w *oomWatcher) add(id, dir string) {
	if w.f == nil || dir == "" {
		return
	}
	p := filepath.Join(dir, "memory.events")
	if _, err := os.Stat(p); err != nil {
		return
	}
	wd, err := unix.InotifyAddWatch(w.fd, p, unix.IN_MODIFY)
	if err != nil {
		log.Printf("watch %s: %v", p, err)
		return
	}
	w.mu.Lock()
	w.wds[int32(wd)] = id
	w.mu.Unlock()
}

func (w *oomWatcher) remove(id string) {
	if w.f == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for wd, cid := range w.wds {
		if cid == id {
			_, _ = unix.InotifyRmWatch(w.fd, uint32(wd))
			delete(w.wds, wd)
		}
	}
}

func (w *oomWatcher) run() {
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			log.Printf("inotify: %v", err)
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			off += unix.SizeofInotifyEvent + int(ev.Len)
			w.mu.Lock()
			id, ok := w.wds[ev.Wd]
			w.mu.Unlock()
			if ok {
				w.check(id)
			}
		}
	}
}
