package netns_test

import (
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/boxlite/boxlite-shim/runtime/netns"
	"github.com/boxlite/boxlite-shim/test/netnstest"
)

// ownNS is the network namespace of the calling thread.
func ownNS(t *testing.T) string {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ns, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// In runs fn in the namespace at the path, and the threads it used are back
// in the process's namespace afterwards.
func TestIn(t *testing.T) {
	ns := netnstest.New(t)
	netnstest.Sh(t, ns, "ip link add in-a type veth peer name in-b")
	host := ownNS(t)
	for range 10 {
		var inside string
		if err := netns.In(ns, func() error {
			_, err := net.InterfaceByName("in-a")
			inside, _ = os.Readlink("/proc/thread-self/ns/net")
			return err
		}); err != nil {
			t.Fatalf("In: %v", err)
		}
		if inside == host {
			t.Fatalf("fn ran in the host's namespace %s", host)
		}
	}
	// Threads picked up now, among them those In used, are the host's.
	var wg sync.WaitGroup
	for range 2 * runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			if got := ownNS(t); got != host {
				t.Errorf("a thread is left in %s, not the host's %s", got, host)
			}
		})
	}
	wg.Wait()
	if _, err := net.InterfaceByName("in-a"); err == nil {
		t.Error("the namespace's link is seen from the host's")
	}

	missing := filepath.Join(t.TempDir(), "gone")
	if err := netns.In(missing, func() error { t.Error("fn ran"); return nil }); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("In of a missing namespace: %v", err)
	}
}

// InNew runs fn in an empty namespace, and nothing made there outlives it.
func TestInNew(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: cannot make network namespaces")
	}
	host := ownNS(t)
	var names []string
	if err := netns.InNew(func() error {
		if ns, _ := os.Readlink("/proc/thread-self/ns/net"); ns == host {
			t.Errorf("fn ran in the host's namespace %s", host)
		}
		links, err := netlink.LinkList()
		for _, l := range links {
			names = append(names, l.Attrs().Name)
		}
		if err != nil {
			return err
		}
		return netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "innew-a"}, PeerName: "innew-b"})
	}); err != nil {
		t.Fatalf("InNew: %v", err)
	}
	if strings.Join(names, " ") != "lo" {
		t.Errorf("a new namespace has %v, want only lo", names)
	}
	if _, err := net.InterfaceByName("innew-a"); err == nil {
		t.Error("a link made in the new namespace is in the host's")
	}
}
