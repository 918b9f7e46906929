package portfwd

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/boxlite/boxlite-shim/runtime/netns"
	"github.com/boxlite/boxlite-shim/test/netnstest"
)

// TestForward: in a pod-like network namespace, connections to any
// loopback port reach the dialer with that port (a stand-in for the agent
// that answers "port N: " and echoes), both ways; Close removes the table.
func TestForward(t *testing.T) {
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command")
	}
	ns := netnstest.New(t)
	netnstest.Sh(t, ns, "ip link set lo up")
	var mu sync.Mutex
	var asked []uint16
	dial := func(ctx context.Context, port uint16) (net.Conn, error) {
		mu.Lock()
		asked = append(asked, port)
		mu.Unlock()
		if port == 9 {
			return nil, fmt.Errorf("nothing answers on port %d", port)
		}
		a, b := net.Pipe()
		go func() {
			defer b.Close()
			fmt.Fprintf(b, "port %d: ", port)
			buf := make([]byte, 64)
			n, _ := b.Read(buf)
			b.Write(buf[:n])
		}()
		return a, nil
	}
	if only, err := OnlyLoopback(ns); err != nil || !only {
		t.Errorf("OnlyLoopback of a namespace with lo alone: %v, %v", only, err)
	}
	f, err := Start(ns, dial)
	if err != nil {
		t.Skipf("no nftables NAT here: %v", err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			f.Close()
		}
	})
	for _, port := range []int{80, 12001, 65000, int(f.Port())} {
		var got string
		err := netns.In(ns, func() error {
			c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(c, "ping"); err != nil {
				return err
			}
			b, err := io.ReadAll(c)
			got = string(b)
			return err
		})
		if err != nil {
			t.Fatalf("port %d in the namespace: %v", port, err)
		}
		if want := fmt.Sprintf("port %d: ping", port); got != want {
			t.Errorf("port %d: got %q, want %q", port, got, want)
		}
	}
	// A port the guest refuses: the connection closes.
	_ = netns.In(ns, func() error {
		c, err := net.DialTimeout("tcp4", "127.0.0.1:9", 5*time.Second)
		if err != nil {
			return nil
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if b, _ := io.ReadAll(c); len(b) != 0 {
			t.Errorf("port 9 (refused by the guest): read %q", b)
		}
		return nil
	})
	if !hasTable(t, ns) {
		t.Errorf("no table %s in the namespace", Table)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	if hasTable(t, ns) {
		t.Errorf("after Close, the table %s is still in the namespace", Table)
	}
}

func hasTable(t *testing.T, ns string) bool {
	t.Helper()
	fd, err := os.Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(fd.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		if tb.Name == Table {
			return true
		}
	}
	return false
}
