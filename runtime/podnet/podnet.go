// Package podnet gives a pod's micro-VM the pod's network, the way Kata
// Containers' "tcfilter" model does. On the host, in the pod's network
// namespace that CNI prepared, Attach picks the pod's interface, makes a TAP
// device for the VMM (libkrun's TAP backend opens it by name), redirects every
// frame between the two both ways (tc ingress + mirred), and describes the
// interface for the guest: MAC, MTU, addresses and routes. In the guest,
// Configure gives the VM's virtio-net interface (the one with that MAC) that
// description, so the guest answers at the pod's IP.
//
// It never touches the host's own network namespace, and owns nothing but the
// TAP device and the two ingress qdiscs it adds; Detach removes them. DNS is
// not its business: CRI bind-mounts the pod's resolv.conf into containers.
// It speaks rtnetlink through github.com/vishvananda/netlink, in the calling
// thread's network namespace: on the host, the pod's, which package netns
// enters.
package podnet

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/boxlite/boxlite-shim/runtime/netns"
)

// TapName is the TAP device Attach makes in the pod's network namespace.
const TapName = "boxlite0"

// Interface describes the guest's network interface.
type Interface struct {
	// MAC is the pod interface's (and so the guest interface's) address.
	MAC string `json:"mac"`
	MTU int    `json:"mtu"`
	// Addrs are the pod's addresses, CIDR ("10.88.0.5/16").
	Addrs []string `json:"addrs"`
	// Routes go through the interface, on-link ones first.
	Routes []Route `json:"routes,omitempty"`
}

// Route is a route through the guest's interface.
type Route struct {
	// Dst is a CIDR; "" is the default route of Gw's family.
	Dst string `json:"dst,omitempty"`
	// Gw is the gateway; "" is an on-link route.
	Gw string `json:"gw,omitempty"`
}

// Attachment is what Attach made in a pod's network namespace.
type Attachment struct {
	NetNS string `json:"netns"`
	// PodLink is the pod's interface, Tap the VMM's TAP device.
	PodLink string `json:"pod_link"`
	Tap     string `json:"tap"`
	// Guest is what the guest's interface must be given.
	Guest Interface `json:"guest"`
}

// Attach prepares the pod's network namespace at path ns for a VM: see the
// package documentation. It returns nil and no error when the namespace has
// no interface to give (only loopback). On error nothing it made is left.
func Attach(ns string) (*Attachment, error) {
	var att *Attachment
	err := netns.In(ns, func() error {
		links, err := list("links", netlink.LinkList)
		if err != nil {
			return err
		}
		link, guest, err := describe(links)
		if err != nil || link == nil {
			return err
		}
		if slices.ContainsFunc(links, func(l netlink.Link) bool { return l.Attrs().Name == TapName }) {
			return fmt.Errorf("%s already exists in the pod's network namespace: another VM uses it: %w", TapName, errdefs.ErrAlreadyExists)
		}
		tap, err := AddTap(TapName)
		if err != nil {
			return err
		}
		if err := redirect(link.Attrs(), tap); err != nil {
			_ = netlink.LinkDel(byIndex(tap))
			_ = netlink.QdiscDel(ingress(link.Attrs().Index))
			return err
		}
		att = &Attachment{NetNS: ns, PodLink: link.Attrs().Name, Tap: TapName, Guest: guest}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pod network %s: %w", ns, err)
	}
	return att, nil
}

// redirect brings the TAP up with the pod link's MTU and mirrors all
// traffic between them.
func redirect(link *netlink.LinkAttrs, tap int) error {
	if err := setUp(byIndex(tap), link.MTU); err != nil {
		return err
	}
	if err := Redirect(link.Index, tap); err != nil {
		return err
	}
	return Redirect(tap, link.Index)
}

// AddTap makes a persistent TAP device (no packet information header;
// owner and group root, as the library sets them) with the given name in
// the calling thread's network namespace, and returns its index.
func AddTap(name string) (int, error) {
	tap := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: name}, Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_NO_PI}
	if err := netlink.LinkAdd(tap); err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) {
			return 0, fmt.Errorf("TAP %s: /dev/net/tun: %w (is the tun module loaded?)", name, err)
		}
		return 0, fmt.Errorf("TAP %s: %w", name, err)
	}
	if tap.Index == 0 {
		return 0, fmt.Errorf("TAP %s: made, but not listed", name)
	}
	return tap.Index, nil
}

// Redirect adds the ingress qdisc (ffff:) to link from and, on it, a filter
// that matches every frame and redirects it to the egress of link to (tc's
// "u32 match u8 0 0 action mirred egress redirect dev TO"), in the calling
// thread's network namespace.
func Redirect(from, to int) error {
	if err := netlink.QdiscAdd(ingress(from)); err != nil {
		return fmt.Errorf("add ingress qdisc to link %d: %w", from, err)
	}
	filter := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: from,
			Parent:    netlink.MakeHandle(0xffff, 0),
			Priority:  1,
			Protocol:  unix.ETH_P_ALL,
		},
		// No selector: the library's default matches all.
		Actions: []netlink.Action{netlink.NewMirredAction(to)},
	}
	if err := netlink.FilterAdd(filter); err != nil {
		return fmt.Errorf("redirect ingress of link %d to link %d: %w", from, to, err)
	}
	return nil
}

// ingress is a link's ingress qdisc.
func ingress(index int) *netlink.Ingress {
	return &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: index,
		Handle:    netlink.MakeHandle(0xffff, 0),
		Parent:    netlink.HANDLE_INGRESS,
	}}
}

// byIndex is the link with that index, for requests that need nothing else.
func byIndex(index int) netlink.Link {
	return &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: index}}
}

// setUp sets a link's MTU (0 = unchanged) and brings it up.
func setUp(link netlink.Link, mtu int) error {
	a := link.Attrs()
	if mtu > 0 {
		if err := netlink.LinkSetMTU(link, mtu); err != nil {
			return fmt.Errorf("set link %d %q MTU %d: %w", a.Index, a.Name, mtu, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("set link %d %q up: %w", a.Index, a.Name, err)
	}
	return nil
}

// list runs a netlink dump of the calling thread's network namespace,
// again while the kernel says it was interrupted (the namespace changed
// while it was read: the answer may be inconsistent), a few times.
func list[T any](what string, dump func() ([]T, error)) ([]T, error) {
	var err error
	for range 5 {
		var out []T
		if out, err = dump(); err == nil {
			return out, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return nil, fmt.Errorf("list %s: %w", what, err)
}

// describe picks the pod's interface among links (the one of the default
// route, else the only one with a global address) and describes it; nil
// when there is none.
func describe(links []netlink.Link) (netlink.Link, Interface, error) {
	addrs, err := list("addresses", func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, Interface{}, err
	}
	routes, err := list("routes", func() ([]netlink.Route, error) { return netlink.RouteList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, Interface{}, err
	}
	// The main table's (RouteList lists no other) unicast routes.
	routes = slices.DeleteFunc(routes, func(r netlink.Route) bool { return r.Type != unix.RTN_UNICAST })
	index := 0
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		for _, r := range routes {
			if index == 0 && r.Family == fam && dst(r) == nil && r.Gw != nil {
				index = r.LinkIndex
			}
		}
	}
	if index == 0 {
		var with []int
		for _, a := range addrs {
			if global(a) && !a.IP.IsLoopback() && !slices.Contains(with, a.LinkIndex) {
				with = append(with, a.LinkIndex)
			}
		}
		switch len(with) {
		case 0:
			return nil, Interface{}, nil
		case 1:
			index = with[0]
		default:
			return nil, Interface{}, fmt.Errorf("%d interfaces have addresses and none has a default route: cannot tell which is the pod's: %w", len(with), errdefs.ErrFailedPrecondition)
		}
	}
	i := slices.IndexFunc(links, func(l netlink.Link) bool { return l.Attrs().Index == index })
	if i < 0 {
		return nil, Interface{}, fmt.Errorf("the default route's interface %d is not listed", index)
	}
	link := links[i]
	la := link.Attrs()
	if len(la.HardwareAddr) != 6 {
		return nil, Interface{}, fmt.Errorf("pod interface %s has no Ethernet address (%q): a VM can only be given an Ethernet interface: %w", la.Name, la.HardwareAddr, errdefs.ErrFailedPrecondition)
	}
	guest := Interface{MAC: la.HardwareAddr.String(), MTU: la.MTU}
	var nets []*net.IPNet
	for _, a := range addrs {
		if a.LinkIndex == index && global(a) {
			guest.Addrs = append(guest.Addrs, a.IPNet.String())
			nets = append(nets, &net.IPNet{IP: a.IP.Mask(a.Mask), Mask: a.Mask})
		}
	}
	var onLink, viaGw []Route
	for _, r := range routes {
		if r.LinkIndex != index {
			continue
		}
		d := dst(r)
		switch {
		case r.Gw == nil && d != nil && (d.IP.To4() == nil && d.IP.IsLinkLocalUnicast() || containsNet(nets, d)):
			// Made by the guest's kernel too: the prefix route of an
			// address, fe80::/64. (An IPv4 link-local route is kept:
			// Calico's gateway is 169.254.1.1, on link.)
		case r.Gw == nil && d != nil:
			onLink = append(onLink, Route{Dst: d.String()})
		case r.Gw != nil:
			rt := Route{Gw: r.Gw.String()}
			if d != nil {
				rt.Dst = d.String()
			}
			viaGw = append(viaGw, rt)
		}
	}
	guest.Routes = append(onLink, viaGw...)
	return link, guest, nil
}

// dst is a route's destination, nil for a default route (which the library
// lists as 0.0.0.0/0 or ::/0).
func dst(r netlink.Route) *net.IPNet {
	if r.Dst == nil {
		return nil
	}
	if ones, _ := r.Dst.Mask.Size(); ones == 0 {
		return nil
	}
	return r.Dst
}

// global is false for link- and host-scope addresses (fe80::/10, lo's).
func global(a netlink.Addr) bool { return a.Scope == unix.RT_SCOPE_UNIVERSE }

func containsNet(nets []*net.IPNet, n *net.IPNet) bool {
	return slices.ContainsFunc(nets, func(m *net.IPNet) bool { return m.String() == n.String() })
}

// Detach removes what Attach made in the network namespace at path ns: the
// TAP device and the ingress qdisc of podLink ("" = not known: the TAP
// only). A namespace, TAP or qdisc already gone is not an error; it is safe
// to run twice.
func Detach(ns, podLink string) error {
	// A namespace CRI has removed (or is removing: unmounted, the file
	// still there) holds nothing of ours any more.
	var st unix.Statfs_t
	if err := unix.Statfs(ns, &st); errors.Is(err, unix.ENOENT) || err == nil && st.Type != unix.NSFS_MAGIC {
		return nil
	}
	err := netns.In(ns, func() error {
		links, err := list("links", netlink.LinkList)
		if err != nil {
			return err
		}
		var errs []error
		for _, l := range links {
			switch a := l.Attrs(); a.Name {
			case TapName:
				if err := netlink.LinkDel(l); err != nil {
					errs = append(errs, fmt.Errorf("delete link %d %q: %w", a.Index, a.Name, err))
				}
			case podLink:
				if err := netlink.QdiscDel(ingress(a.Index)); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
					errs = append(errs, fmt.Errorf("delete ingress qdisc of link %d %q: %w", a.Index, a.Name, err))
				}
			}
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return fmt.Errorf("pod network %s: detach: %w", ns, err)
	}
	return nil
}

// Configure gives the guest's interface (the link with iface.MAC) the pod's
// MTU, addresses and routes, and brings it and loopback up. It works in the
// calling thread's network namespace (the guest's) and is idempotent.
func Configure(iface Interface) error {
	mac, err := net.ParseMAC(iface.MAC)
	if err != nil {
		return fmt.Errorf("guest network: bad MAC %q: %w", iface.MAC, err)
	}
	links, err := list("links", netlink.LinkList)
	if err != nil {
		return fmt.Errorf("guest network: %w", err)
	}
	var link netlink.Link
	var names []string
	for _, l := range links {
		a := l.Attrs()
		names = append(names, a.Name+" "+a.HardwareAddr.String())
		if a.Name == "lo" {
			if err := setUp(l, 0); err != nil {
				return fmt.Errorf("guest network: %w", err)
			}
		}
		if a.HardwareAddr.String() == mac.String() {
			link = l
		}
	}
	if link == nil {
		return fmt.Errorf("guest network: no interface has MAC %s (the VM's virtio-net device); interfaces: %s", mac, strings.Join(names, ", "))
	}
	if err := setUp(link, iface.MTU); err != nil {
		return fmt.Errorf("guest network: %w", err)
	}
	for _, a := range iface.Addrs {
		ip, n, err := net.ParseCIDR(a)
		if err != nil {
			return fmt.Errorf("guest network: address %q: %w", a, err)
		}
		n.IP = ip
		// No duplicate address detection: the address is the pod's,
		// already checked by CNI, and a tentative IPv6 address would not
		// be usable yet.
		if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: n, Flags: unix.IFA_F_NODAD}); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("guest network: add address %s to %s: %w", a, link.Attrs().Name, err)
		}
	}
	for _, r := range iface.Routes {
		rt, err := route(link.Attrs().Index, r)
		if err != nil {
			return fmt.Errorf("guest network: %w", err)
		}
		if err := netlink.RouteAdd(rt); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("guest network: add route %s dev %s: %w", describeRoute(r), link.Attrs().Name, err)
		}
	}
	return nil
}

// route is r through link index, in the main table: via r.Gw, or on the
// link when there is no gateway.
func route(index int, r Route) (*netlink.Route, error) {
	rt := &netlink.Route{LinkIndex: index, Scope: netlink.SCOPE_LINK}
	if r.Dst != "" {
		_, d, err := net.ParseCIDR(r.Dst)
		if err != nil {
			return nil, fmt.Errorf("route to %q: %w", r.Dst, err)
		}
		rt.Dst = d
	}
	if r.Gw != "" {
		if rt.Gw = net.ParseIP(r.Gw); rt.Gw == nil {
			return nil, fmt.Errorf("gateway %q is not an IP address", r.Gw)
		}
		if rt.Dst != nil && (rt.Dst.IP.To4() == nil) != (rt.Gw.To4() == nil) {
			return nil, fmt.Errorf("route to %s via %s: families differ", r.Dst, r.Gw)
		}
		rt.Scope = netlink.SCOPE_UNIVERSE
	}
	if rt.Dst == nil && rt.Gw == nil {
		return nil, errors.New("a route needs a destination or a gateway")
	}
	return rt, nil
}

func describeRoute(r Route) string {
	s := r.Dst
	if s == "" {
		s = "default"
	}
	if r.Gw != "" {
		s += " via " + r.Gw
	}
	return s
}

// WriteFile writes iface to path as JSON (for the agent's -network flag).
func WriteFile(path string, iface Interface) error {
	b, err := json.Marshal(iface)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// ReadFile reads what WriteFile wrote.
func ReadFile(path string) (Interface, error) {
	var iface Interface
	b, err := os.ReadFile(path)
	if err != nil {
		return iface, fmt.Errorf("guest network: %w", err)
	}
	if err := json.Unmarshal(b, &iface); err != nil {
		return iface, fmt.Errorf("guest network: %s: %w", path, err)
	}
	return iface, nil
}
