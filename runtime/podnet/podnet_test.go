package podnet

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/boxlite/boxlite-shim/runtime/netns"
	"github.com/boxlite/boxlite-shim/test/netnstest"
)

var (
	newNetNS = netnstest.New
	sh       = netnstest.Sh
)

// podNS makes what CNI's bridge plugin would: a pod namespace whose eth0 is
// one end of a veth pair (10.99.0.2/24, default route via 10.99.0.1, IPv6
// fd99::2/64), the other end in a "node" namespace holding the gateway.
func podNS(t *testing.T) (pod, node string) {
	pod, node = newNetNS(t), newNetNS(t)
	sh(t, node, "ip link add veth-node type veth peer name eth0 && ip link set eth0 netns "+pod+
		" && ip addr add 10.99.0.1/24 dev veth-node && ip addr add fd99::1/64 nodad dev veth-node && ip link set veth-node up")
	sh(t, pod, "ip link set lo up && ip link set eth0 mtu 1450 up && ip addr add 10.99.0.2/24 dev eth0 && ip addr add fd99::2/64 nodad dev eth0"+
		" && ip route add default via 10.99.0.1 && ip route add 10.98.0.0/16 dev eth0 && ip route add 10.97.0.0/16 via 10.99.0.1")
	return pod, node
}

func TestAttachDescribesThePodInterface(t *testing.T) {
	pod, _ := podNS(t)
	mac := strings.Fields(sh(t, pod, "ip -br link show eth0"))[2]
	att, err := Attach(pod)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Detach(pod, att.PodLink) })
	if att.PodLink != "eth0" || att.Tap != TapName || att.NetNS != pod {
		t.Errorf("attachment %+v", att)
	}
	g := att.Guest
	if g.MAC != mac || g.MTU != 1450 {
		t.Errorf("guest MAC %s MTU %d, want %s 1450", g.MAC, g.MTU, mac)
	}
	if strings.Join(g.Addrs, " ") != "10.99.0.2/24 fd99::2/64" {
		t.Errorf("guest addresses %v", g.Addrs)
	}
	want := []Route{{Dst: "10.98.0.0/16"}, {Gw: "10.99.0.1"}, {Dst: "10.97.0.0/16", Gw: "10.99.0.1"}}
	if len(g.Routes) != len(want) {
		t.Fatalf("guest routes %+v, want %+v", g.Routes, want)
	}
	for _, w := range want {
		found := false
		for _, r := range g.Routes {
			found = found || r == w
		}
		if !found {
			t.Errorf("guest routes %+v lack %+v", g.Routes, w)
		}
	}
	if g.Routes[0] != want[0] {
		t.Errorf("on-link routes must come first: %+v", g.Routes)
	}
	tap := sh(t, pod, "ip -d link show "+TapName)
	if !strings.Contains(tap, "mtu 1450") || !strings.Contains(tap, "tun type tap") || !strings.Contains(tap, "state UP") && !strings.Contains(tap, ",UP") {
		t.Errorf("TAP: %s", tap)
	}
	for dev, to := range map[string]string{"eth0": TapName, TapName: "eth0"} {
		if f := sh(t, pod, "tc filter show dev "+dev+" ingress"); !strings.Contains(f, "Egress Redirect to device "+to) {
			t.Errorf("%s ingress filters: %s", dev, f)
		}
	}

	// Twice in one namespace: refused, and the first is intact.
	if _, err := Attach(pod); !errdefs.IsAlreadyExists(err) {
		t.Errorf("second Attach: %v, want already exists", err)
	}
	if f := sh(t, pod, "tc filter show dev eth0 ingress"); !strings.Contains(f, "Egress Redirect to device "+TapName) {
		t.Errorf("first attachment damaged: %s", f)
	}

	for i := range 2 {
		if err := Detach(pod, att.PodLink); err != nil {
			t.Fatalf("Detach %d: %v", i, err)
		}
	}
	if out := sh(t, pod, "ip -o link show; tc qdisc show dev eth0"); strings.Contains(out, TapName) || strings.Contains(out, "ingress") {
		t.Errorf("left after Detach: %s", out)
	}
}

func TestAttachCases(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup string // in the namespace
		want  string // "" = no error
		// routes, for an attachment: the guest's
		routes []Route
	}{
		{name: "loopback only", setup: "ip link set lo up"},
		{name: "no address", setup: "ip link add eth0 type veth peer name peer0 && ip link set eth0 up"},
		{name: "one interface, no default route", setup: "ip link add eth0 type veth peer name peer0 && ip link set eth0 up && ip addr add 10.1.0.2/24 dev eth0"},
		{name: "two interfaces, no default route", setup: "ip link add ethA type veth peer name ethB && ip addr add 10.1.0.2/24 dev ethA && ip addr add 10.2.0.2/24 dev ethB && ip link set ethA up && ip link set ethB up",
			want: "cannot tell which is the pod's"},
		{name: "calico style: /32 address, link-local gateway", setup: "ip link add eth0 type veth peer name peer0 && ip link set eth0 up && ip addr add 10.244.1.5/32 dev eth0" +
			" && ip route add 169.254.1.1 dev eth0 scope link && ip route add default via 169.254.1.1 dev eth0",
			routes: []Route{{Dst: "169.254.1.1/32"}, {Gw: "169.254.1.1"}}},
		{name: "not Ethernet", setup: "ip tuntap add t0 mode tun && ip addr add 10.3.0.2/24 dev t0 && ip link set t0 up && ip route add default dev t0",
			want: "no Ethernet address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNetNS(t)
			sh(t, ns, tc.setup)
			att, err := Attach(ns)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Attach: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Attach: %v, want %q", err, tc.want)
			}
			attaches := tc.routes != nil || tc.name == "one interface, no default route"
			if att != nil {
				t.Cleanup(func() { _ = Detach(ns, att.PodLink) })
				if !attaches {
					t.Errorf("attachment %+v", att)
				}
				if fmt.Sprint(att.Guest.Routes) != fmt.Sprint(tc.routes) && tc.routes != nil {
					t.Errorf("guest routes %+v, want %+v", att.Guest.Routes, tc.routes)
				}
				// The description applies in a guest.
				guest := newNetNS(t)
				sh(t, guest, "ip link add eth0 type veth peer name p0 && ip link set eth0 address "+att.Guest.MAC)
				if err := netns.In(guest, func() error { return Configure(att.Guest) }); err != nil {
					t.Fatalf("Configure: %v", err)
				}
				if out := sh(t, guest, "ip -o addr show dev eth0; ip route"); !strings.Contains(out, att.Guest.Addrs[0]) ||
					len(tc.routes) > 0 && !strings.Contains(out, "default via "+tc.routes[len(tc.routes)-1].Gw) {
					t.Errorf("guest after Configure:\n%s", out)
				}
				return
			}
			if attaches && err == nil {
				t.Error("no attachment")
			}
			if out := sh(t, ns, "ip -o link show"); strings.Contains(out, TapName) {
				t.Errorf("left behind: %s", out)
			}
		})
	}
	t.Run("missing namespace", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "gone")
		if _, err := Attach(missing); err == nil || !strings.Contains(err.Error(), missing) {
			t.Errorf("Attach: %v", err)
		}
		if err := Detach(missing, "eth0"); err != nil {
			t.Errorf("Detach of a namespace already gone: %v", err)
		}
		// Unmounted by CRI, the file not yet removed.
		if err := os.WriteFile(missing, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := Detach(missing, "eth0"); err != nil {
			t.Errorf("Detach of an unmounted namespace file: %v", err)
		}
	})
}

// TestGuestReachesThePod moves frames between the TAP Attach made and a TAP
// in a "guest" namespace (what libkrun's virtio-net device does), configures
// the guest with Configure, and checks that the node reaches a server in the
// guest at the pod's IP, and the guest reaches the node.
func TestGuestReachesThePod(t *testing.T) {
	pod, node := podNS(t)
	guestNS := newNetNS(t)
	att, err := Attach(pod)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Detach(pod, att.PodLink) })

	podTap := openTap(t, pod, TapName, nil)
	mac, _ := net.ParseMAC(att.Guest.MAC)
	guestTap := openTap(t, guestNS, "eth0", mac)
	go pump(podTap, guestTap)
	go pump(guestTap, podTap)

	var ln net.Listener
	if err := netns.In(guestNS, func() error {
		if err := Configure(att.Guest); err != nil {
			return err
		}
		if err := Configure(att.Guest); err != nil {
			return errors.New("second Configure: " + err.Error())
		}
		var err error
		ln, err = net.Listen("tcp", ":8080")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hello from the guest"))
			c.Close()
		}
	}()
	if out := sh(t, guestNS, "ip -o addr show eth0; ip route"); !strings.Contains(out, "10.99.0.2/24") || !strings.Contains(out, "default via 10.99.0.1") || !strings.Contains(out, "10.98.0.0/16 dev eth0") {
		t.Errorf("guest network:\n%s", out)
	}
	for _, addr := range []string{"10.99.0.2:8080", "[fd99::2]:8080"} {
		if got, err := fetch(node, addr); err != nil || got != "hello from the guest" {
			t.Errorf("node -> %s: %v %q", addr, err, got)
		}
	}
	// And out: the guest reaches a server on the node, through the route
	// via the gateway.
	sh(t, node, "ip addr add 10.97.0.1/32 dev veth-node")
	var nodeLn net.Listener
	if err := netns.In(node, func() (err error) { nodeLn, err = net.Listen("tcp", "10.97.0.1:9090"); return err }); err != nil {
		t.Fatal(err)
	}
	defer nodeLn.Close()
	go func() {
		if c, err := nodeLn.Accept(); err == nil {
			_, _ = c.Write([]byte("hello from the node"))
			c.Close()
		}
	}()
	if got, err := fetch(guestNS, "10.97.0.1:9090"); err != nil || got != "hello from the node" {
		t.Errorf("guest -> node 10.97.0.1:9090: %v %q", err, got)
	}
}

// fetch connects to addr from the namespace at ns and reads until the
// server closes.
func fetch(ns, addr string) (string, error) {
	var got []byte
	err := netns.In(ns, func() error {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		got, err = io.ReadAll(c)
		return err
	})
	return string(got), err
}

func TestConfigureWithoutTheInterface(t *testing.T) {
	ns := newNetNS(t)
	err := netns.In(ns, func() error {
		return Configure(Interface{MAC: "02:00:00:00:00:01", MTU: 1500, Addrs: []string{"10.1.0.2/24"}})
	})
	if err == nil || !strings.Contains(err.Error(), "no interface has MAC 02:00:00:00:00:01") {
		t.Errorf("Configure: %v", err)
	}
}

// The kernel's answers to bad requests come back as errors that say what
// was asked, and keep the kernel's error for errors.Is.
func TestErrors(t *testing.T) {
	ns := newNetNS(t)
	sh(t, ns, "ip link set lo up && ip link add eth0 type veth peer name p0 && ip link set eth0 address 02:00:00:00:00:09")
	guest := func(routes ...Route) func() error {
		return func() error { return Configure(Interface{MAC: "02:00:00:00:00:09", Routes: routes}) }
	}
	for _, tc := range []struct {
		name string
		do   func() error // in ns
		is   error
		want string
	}{
		{"redirect twice", func() error {
			a, err := AddTap("t0")
			if err != nil {
				return err
			}
			b, err := AddTap("t1")
			if err != nil {
				return err
			}
			if err := Redirect(a, b); err != nil {
				return err
			}
			return Redirect(a, b)
		}, unix.EEXIST, "add ingress qdisc to link "},
		{"redirect from a missing link", func() error { return Redirect(999, 1) }, unix.ENODEV, "add ingress qdisc to link 999"},
		{"redirect to a missing link", func() error { return Redirect(1, 999) }, unix.ENODEV, "redirect ingress of link 1 to link 999"},
		{"unreachable gateway", guest(Route{Gw: "10.6.0.1"}), unix.ENETUNREACH, "guest network: add route default via 10.6.0.1 dev eth0"},
		{"route with neither destination nor gateway", guest(Route{}), nil, "a route needs a destination or a gateway"},
		{"route families differ", guest(Route{Dst: "10.5.0.0/16", Gw: "fd00::1"}), nil, "route to 10.5.0.0/16 via fd00::1: families differ"},
		{"gateway not an address", guest(Route{Gw: "gw"}), nil, `gateway "gw" is not an IP address`},
		{"bad address", func() error { return Configure(Interface{MAC: "02:00:00:00:00:09", Addrs: []string{"10.5.0.2"}}) }, nil, `address "10.5.0.2"`},
		{"bad MAC", func() error { return Configure(Interface{MAC: "nope"}) }, nil, `bad MAC "nope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := netns.In(ns, tc.do)
			if err == nil || !strings.Contains(err.Error(), tc.want) || tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("got %v, want %q (%v)", err, tc.want, tc.is)
			}
		})
	}
}

func TestFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "network.json")
	want := Interface{MAC: "02:00:00:00:00:01", MTU: 1400, Addrs: []string{"10.1.0.2/24"}, Routes: []Route{{Gw: "10.1.0.1"}}}
	if err := WriteFile(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(path)
	if err != nil || got.MAC != want.MAC || got.MTU != want.MTU || got.Addrs[0] != want.Addrs[0] || got.Routes[0] != want.Routes[0] {
		t.Errorf("ReadFile: %+v %v", got, err)
	}
	if err := os.WriteFile(path, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("ReadFile of bad JSON: %v", err)
	}
}

// openTap opens (or creates) TAP name in the namespace at ns, with mac if
// given.
func openTap(t *testing.T, ns, name string, mac net.HardwareAddr) *os.File {
	t.Helper()
	var f *os.File
	err := netns.In(ns, func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		ifr, _ := unix.NewIfreq(name)
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return err
		}
		f = os.NewFile(uintptr(fd), name)
		if mac == nil {
			return nil
		}
		l, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetHardwareAddr(l, mac); err != nil {
			return err
		}
		return netlink.LinkSetUp(l)
	})
	if err != nil {
		t.Fatalf("TAP %s: %v", name, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// pump copies frames from one TAP to another until either closes.
func pump(from, to *os.File) {
	buf := make([]byte, 65536)
	for {
		n, err := from.Read(buf)
		if err != nil {
			return
		}
		if _, err := to.Write(buf[:n]); err != nil && !errors.Is(err, unix.EIO) {
			return
		}
	}
}
