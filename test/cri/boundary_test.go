package cri

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/boxlite/boxlite-shim/test/crid"
	"github.com/boxlite/boxlite-shim/test/ctrd"
)

// TestGuestPlantedLinks is the attack of the VM-boundary issue, as a guest
// with root mounts it: the guest writes the guest root, so while a container
// joins its pod it swaps the directories the shim makes for the container
// (.boxlite/containers/<id>/rootfs and .../mounts) for symbolic links to a
// host directory, hoping the shim mounts the image or a volume over it. An
// "attacker" goroutine does that from the host side, into the same tree the
// guest writes, the instant each directory appears (inotify). The host
// directories must stay untouched, whatever happens to the containers.
// Against the code before package share (MkdirAll + mount in the host's
// namespace, following the links) this test was seen failing: the busybox
// image ended up mounted over the canary directory.
func TestGuestPlantedLinks(t *testing.T) {
	e := newEnv(t)
	t.Cleanup(func() { e.AssertClean(t) })
	podCfg := e.JSONFile(t, "attacked-pod.json", e.PodConfig("attacked", nil, nil))
	pod := e.Must(t, "runp", "--runtime", "boxlite", podCfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = e.RemovePod(ctx, pod)
	})
	rec := e.Record(t, pod)
	containers := filepath.Join(rec.Dir, "root", ".boxlite", "containers")

	canary := t.TempDir() // a host directory the guest should never reach
	if err := os.WriteFile(filepath.Join(canary, "keep"), []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	volume := t.TempDir()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var planted []string
	var mu sync.Mutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, p := range plantLinks(t, containers, canary, stop) {
			mu.Lock()
			planted = append(planted, p)
			mu.Unlock()
		}
	}()

	for i := 0; i < 6; i++ {
		cfg := crid.ContainerConfig(fmt.Sprintf("victim%d", i), nil, "sleep", "1000")
		cfg["mounts"] = []map[string]any{{"container_path": "/vol", "host_path": volume}}
		c, err := e.Crictl(t, "create", pod, e.JSONFile(t, fmt.Sprintf("victim%d.json", i), cfg), podCfg)
		if err == nil {
			_, _ = e.Crictl(t, "start", c)
		}
		t.Logf("container %d: %v", i, err)
	}
	close(stop)
	wg.Wait()
	mu.Lock()
	t.Logf("links planted while containers joined: %v", planted)
	n := len(planted)
	mu.Unlock()
	if n == 0 {
		t.Fatal("the attacker planted no link: the test proved nothing")
	}

	ents, _ := os.ReadDir(canary)
	if len(ents) != 1 || ents[0].Name() != "keep" {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("the host directory the links pointed at was changed: %v", names)
	}
	if m := ctrd.MountsUnder(canary); len(m) > 0 {
		t.Errorf("host mounts over the canary directory: %v", m)
	}
	if m := ctrd.MountsUnder(volume); len(m) > 0 {
		t.Errorf("host mounts under the volume: %v", m)
	}
}

// plantLinks watches dir (the guest root's containers directory) and, for
// each container directory that appears, replaces its rootfs and mounts
// subdirectories with symbolic links to target as soon as they are made,
// until stop is closed. It returns what it replaced.
func plantLinks(t *testing.T, dir, target string, stop <-chan struct{}) []string {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Errorf("inotify: %v", err)
		return nil
	}
	defer unix.Close(fd)
	watches := map[int32]string{}
	add := func(d string) {
		if wd, err := unix.InotifyAddWatch(fd, d, unix.IN_CREATE|unix.IN_MOVED_TO); err == nil {
			watches[int32(wd)] = d
		}
	}
	add(dir)
	var planted []string
	buf := make([]byte, 64<<10)
	for {
		select {
		case <-stop:
			return planted
		default:
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, _ := unix.Poll(pfd, 50); n <= 0 {
			continue
		}
		n, err := unix.Read(fd, buf)
		if err != nil {
			continue
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
			off += unix.SizeofInotifyEvent + int(ev.Len)
			parent, ok := watches[ev.Wd]
			if !ok || name == "" {
				continue
			}
			p := filepath.Join(parent, name)
			switch {
			case parent == dir:
				add(p) // a container's directory: watch what is made in it
			case name == "rootfs" || name == "mounts":
				if err := os.Rename(p, p+".guest"); err != nil {
					continue
				}
				if err := os.Symlink(target, p); err == nil {
					planted = append(planted, strings.TrimPrefix(p, dir+"/"))
				} else if !errors.Is(err, os.ErrExist) {
					t.Logf("symlink %s: %v", p, err)
				}
			}
		}
	}
}
