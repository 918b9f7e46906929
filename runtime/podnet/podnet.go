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
	"golang.org/x/sys/unix"

	"github.com/boxlite/boxlite-shim/runtime/netlink"
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

// Attach prepares the pod's network namespace at netns for a VM: see the
// package documentation. It returns nil and no error when the namespace has
// no interface to give (only loopback). On error nothing it made is left.
func Attach(netns string) (*Attachment, error) {
	var att *Attachment
	err := netlink.InNetNS(netns, func() error {
		c, err := netlink.Open()
		if err != nil {
			return err
		}
		defer c.Close()
		link, guest, err := describe(c)
		if err != nil || link == nil {
			return err
		}
		if _, err := c.LinkByName(TapName); err == nil {
			return fmt.Errorf("%s already exists in the pod's network namespace: another VM uses it: %w", TapName, errdefs.ErrAlreadyExists)
		}
		tap, err := c.CreateTap(TapName)
		if err != nil {
			return err
		}
		if err := redirect(c, *link, tap); err != nil {
			_ = c.DeleteLink(tap.Index)
			_ = c.DeleteIngressQdisc(link.Index)
			return err
		}
		att = &Attachment{NetNS: netns, PodLink: link.Name, Tap: TapName, Guest: guest}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pod network %s: %w", netns, err)
	}
	return att, nil
}

// redirect brings the TAP up with the pod link's MTU and mirrors all
// traffic between them.
func redirect(c *netlink.Conn, link, tap netlink.Link) error {
	if err := c.SetLink(tap.Index, link.MTU, nil); err != nil {
		return err
	}
	for _, p := range [][2]int{{link.Index, tap.Index}, {tap.Index, link.Index}} {
		if err := c.AddIngressQdisc(p[0]); err != nil {
			return err
		}
		if err := c.RedirectIngress(p[0], p[1]); err != nil {
			return err
		}
	}
	return nil
}

// describe picks the pod's interface (the one of the default route, else the
// only one with a global address) and describes it; nil when there is none.
func describe(c *netlink.Conn) (*netlink.Link, Interface, error) {
	links, err := c.Links()
	if err != nil {
		return nil, Interface{}, err
	}
	addrs, err := c.Addrs()
	if err != nil {
		return nil, Interface{}, err
	}
	routes, err := c.Routes()
	if err != nil {
		return nil, Interface{}, err
	}
	index := 0
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		for _, r := range routes {
			if index == 0 && r.Family == fam && r.Dst == nil && r.Gw != nil {
				index = r.LinkIndex
			}
		}
	}
	if index == 0 {
		var with []int
		for _, a := range addrs {
			if a.Global && !a.IPNet.IP.IsLoopback() && !slices.Contains(with, a.LinkIndex) {
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
	i := slices.IndexFunc(links, func(l netlink.Link) bool { return l.Index == index })
	if i < 0 {
		return nil, Interface{}, fmt.Errorf("the default route's interface %d is not listed", index)
	}
	link := links[i]
	if len(link.MAC) != 6 {
		return nil, Interface{}, fmt.Errorf("pod interface %s has no Ethernet address (%q): a VM can only be given an Ethernet interface: %w", link.Name, link.MAC, errdefs.ErrFailedPrecondition)
	}
	guest := Interface{MAC: link.MAC.String(), MTU: link.MTU}
	var nets []*net.IPNet
	for _, a := range addrs {
		if a.LinkIndex == index && a.Global {
			guest.Addrs = append(guest.Addrs, a.IPNet.String())
			nets = append(nets, &net.IPNet{IP: a.IPNet.IP.Mask(a.IPNet.Mask), Mask: a.IPNet.Mask})
		}
	}
	var onLink, viaGw []Route
	for _, r := range routes {
		if r.LinkIndex != index {
			continue
		}
		switch {
		case r.Gw == nil && r.Dst != nil && (r.Dst.IP.To4() == nil && r.Dst.IP.IsLinkLocalUnicast() || containsNet(nets, r.Dst)):
			// Made by the guest's kernel too: the prefix route of an
			// address, fe80::/64. (An IPv4 link-local route is kept:
			// Calico's gateway is 169.254.1.1, on link.)
		case r.Gw == nil && r.Dst != nil:
			onLink = append(onLink, Route{Dst: r.Dst.String()})
		case r.Gw != nil:
			rt := Route{Gw: r.Gw.String()}
			if r.Dst != nil {
				rt.Dst = r.Dst.String()
			}
			viaGw = append(viaGw, rt)
		}
	}
	guest.Routes = append(onLink, viaGw...)
	return &link, guest, nil
}

func containsNet(nets []*net.IPNet, n *net.IPNet) bool {
	return slices.ContainsFunc(nets, func(m *net.IPNet) bool { return m.String() == n.String() })
}

// Detach removes what Attach made in netns: the TAP device and the ingress
// qdisc of podLink ("" = not known: the TAP only). A namespace, TAP or qdisc
// already gone is not an error; it is safe to run twice.
func Detach(netns, podLink string) error {
	// A namespace CRI has removed (or is removing: unmounted, the file
	// still there) holds nothing of ours any more.
	var st unix.Statfs_t
	if err := unix.Statfs(netns, &st); errors.Is(err, unix.ENOENT) || err == nil && st.Type != unix.NSFS_MAGIC {
		return nil
	}
	err := netlink.InNetNS(netns, func() error {
		return withLinks(func(c *netlink.Conn, links []netlink.Link) error {
			var errs []error
			for _, l := range links {
				switch l.Name {
				case TapName:
					errs = append(errs, c.DeleteLink(l.Index))
				case podLink:
					if err := c.DeleteIngressQdisc(l.Index); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
						errs = append(errs, err)
					}
				}
			}
			return errors.Join(errs...)
		})
	})
	if err != nil {
		return fmt.Errorf("pod network %s: detach: %w", netns, err)
	}
	return nil
}

// Configure gives the guest's interface (the link with iface.MAC) the pod's
// MTU, addresses and routes, and brings it and loopback up. It works in the
// calling thread's network namespace (the guest's) and is idempotent.
func Configure(iface Interface) error {
	return withLinks(func(c *netlink.Conn, links []netlink.Link) error { return configure(c, links, iface) })
}

// withLinks runs fn with an rtnetlink socket of the calling thread's network
// namespace and the namespace's links.
func withLinks(fn func(c *netlink.Conn, links []netlink.Link) error) error {
	c, err := netlink.Open()
	if err != nil {
		return err
	}
	defer c.Close()
	links, err := c.Links()
	if err != nil {
		return err
	}
	return fn(c, links)
}

func configure(c *netlink.Conn, links []netlink.Link, iface Interface) error {
	mac, err := net.ParseMAC(iface.MAC)
	if err != nil {
		return fmt.Errorf("guest network: bad MAC %q: %w", iface.MAC, err)
	}
	var link *netlink.Link
	var names []string
	for i := range links {
		names = append(names, links[i].Name+" "+links[i].MAC.String())
		if links[i].Name == "lo" {
			if err := c.SetLink(links[i].Index, 0, nil); err != nil {
				return err
			}
		}
		if links[i].MAC.String() == mac.String() {
			link = &links[i]
		}
	}
	if link == nil {
		return fmt.Errorf("guest network: no interface has MAC %s (the VM's virtio-net device); interfaces: %s", mac, strings.Join(names, ", "))
	}
	if err := c.SetLink(link.Index, iface.MTU, nil); err != nil {
		return fmt.Errorf("guest network: %w", err)
	}
	for _, a := range iface.Addrs {
		ip, n, err := net.ParseCIDR(a)
		if err != nil {
			return fmt.Errorf("guest network: address %q: %w", a, err)
		}
		n.IP = ip
		if err := c.AddAddr(link.Index, *n); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("guest network: %w", err)
		}
	}
	for _, r := range iface.Routes {
		var dst *net.IPNet
		if r.Dst != "" {
			if _, dst, err = net.ParseCIDR(r.Dst); err != nil {
				return fmt.Errorf("guest network: route to %q: %w", r.Dst, err)
			}
		}
		var gw net.IP
		if r.Gw != "" {
			if gw = net.ParseIP(r.Gw); gw == nil {
				return fmt.Errorf("guest network: gateway %q is not an IP address", r.Gw)
			}
		}
		if err := c.AddRoute(link.Index, dst, gw); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("guest network: %w", err)
		}
	}
	return nil
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
