// Package netlink speaks the few rtnetlink requests boxlite needs to give a
// micro-VM its pod's network: listing links, addresses and routes, setting a
// link up with an MTU and MAC, adding addresses and routes, making a
// persistent TAP device, and redirecting all of one link's ingress to another
// (an ingress qdisc with a u32 match-all filter and a mirred action, as Kata
// Containers' "tcfilter" model does).
//
// It works in the network namespace of the calling thread: callers that
// target another namespace enter it first (see InNetNS). It holds no policy:
// which interface a pod gets, and what the guest does with it, belong to
// package podnet.
package netlink

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Conn is an rtnetlink socket, bound to the network namespace of the thread
// that opened it.
type Conn struct {
	fd  int
	seq atomic.Uint32
}

// Open opens an rtnetlink socket in the calling thread's network namespace.
func Open() (*Conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink: socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink: bind: %w", err)
	}
	return &Conn{fd: fd}, nil
}

// Close closes the socket.
func (c *Conn) Close() error { return unix.Close(c.fd) }

// request sends one message (header + body) and returns the answers: for a
// dump, every message until NLMSG_DONE; otherwise none, after the ACK.
func (c *Conn) request(typ uint16, flags uint16, body []byte) ([]syscall.NetlinkMessage, error) {
	seq := c.seq.Add(1)
	h := unix.NlMsghdr{
		Len:   uint32(unix.SizeofNlMsghdr + len(body)),
		Type:  typ,
		Flags: flags | unix.NLM_F_REQUEST | unix.NLM_F_ACK,
		Seq:   seq,
	}
	msg := make([]byte, 0, h.Len)
	msg = append(msg, (*[unix.SizeofNlMsghdr]byte)(unsafe.Pointer(&h))[:]...)
	msg = append(msg, body...)
	if err := unix.Sendto(c.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("netlink: send: %w", err)
	}
	var out []syscall.NetlinkMessage
	for {
		// A new buffer each time: the messages kept in out point into it.
		buf := make([]byte, 1<<16)
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("netlink: receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("netlink: parse: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != seq {
				continue
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return nil, errors.New("netlink: short error message")
				}
				if e := int32(binary.NativeEndian.Uint32(m.Data[:4])); e != 0 {
					return nil, unix.Errno(-e)
				}
				// NLM_F_DUMP is two bits, one shared with NLM_F_EXCL.
				if flags&unix.NLM_F_DUMP != unix.NLM_F_DUMP {
					return out, nil
				}
			default:
				out = append(out, m)
			}
		}
	}
}

// attrs builds rtnetlink attributes (each 4-byte aligned).
type attrs []byte

func (a attrs) add(typ uint16, data []byte) attrs {
	l := unix.SizeofRtAttr + len(data)
	b := make([]byte, rtaAlign(l))
	binary.NativeEndian.PutUint16(b[0:2], uint16(l))
	binary.NativeEndian.PutUint16(b[2:4], typ)
	copy(b[4:], data)
	return append(a, b...)
}

func (a attrs) str(typ uint16, s string) attrs { return a.add(typ, append([]byte(s), 0)) }

func (a attrs) u32(typ uint16, v uint32) attrs {
	return a.add(typ, binary.NativeEndian.AppendUint32(nil, v))
}

func rtaAlign(n int) int { return (n + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1) }

func bytesOf[T any](v *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v))
}

// Link is a network interface.
type Link struct {
	Index int
	Name  string
	MAC   net.HardwareAddr
	MTU   int
	Up    bool
	// Kind is the rtnetlink link kind ("veth", "tun", "dummy", ...; "" for
	// loopback and physical devices).
	Kind string
}

// Links lists the links of the namespace.
func (c *Conn) Links() ([]Link, error) {
	msgs, err := c.request(unix.RTM_GETLINK, unix.NLM_F_DUMP, bytesOf(&unix.IfInfomsg{Family: unix.AF_UNSPEC}))
	if err != nil {
		return nil, fmt.Errorf("netlink: list links: %w", err)
	}
	var links []Link
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWLINK || len(m.Data) < unix.SizeofIfInfomsg {
			continue
		}
		ifi := (*unix.IfInfomsg)(unsafe.Pointer(&m.Data[0]))
		l := Link{Index: int(ifi.Index), Up: ifi.Flags&unix.IFF_UP != 0}
		for _, a := range parseAttrs(m.Data[unix.SizeofIfInfomsg:]) {
			switch a.typ {
			case unix.IFLA_IFNAME:
				l.Name = cString(a.value)
			case unix.IFLA_ADDRESS:
				l.MAC = net.HardwareAddr(append([]byte(nil), a.value...))
			case unix.IFLA_MTU:
				if len(a.value) >= 4 {
					l.MTU = int(binary.NativeEndian.Uint32(a.value))
				}
			case unix.IFLA_LINKINFO:
				l.Kind = linkKind(a.value)
			}
		}
		links = append(links, l)
	}
	return links, nil
}

// LinkByName finds a link by name.
func (c *Conn) LinkByName(name string) (Link, error) {
	links, err := c.Links()
	if err != nil {
		return Link{}, err
	}
	for _, l := range links {
		if l.Name == name {
			return l, nil
		}
	}
	return Link{}, fmt.Errorf("netlink: no link %q: %w", name, os.ErrNotExist)
}

type attr struct {
	typ   uint16
	value []byte
}

// parseAttrs splits rtnetlink attributes, stopping at a malformed one.
func parseAttrs(b []byte) []attr {
	var out []attr
	for len(b) >= unix.SizeofRtAttr {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		if l < unix.SizeofRtAttr || l > len(b) {
			break
		}
		out = append(out, attr{typ: binary.NativeEndian.Uint16(b[2:4]) &^ unix.NLA_F_NESTED, value: b[unix.SizeofRtAttr:l]})
		b = b[min(rtaAlign(l), len(b)):]
	}
	return out
}

// linkKind reads IFLA_INFO_KIND from an IFLA_LINKINFO payload.
func linkKind(b []byte) string {
	for _, a := range parseAttrs(b) {
		if a.typ == unix.IFLA_INFO_KIND {
			return cString(a.value)
		}
	}
	return ""
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// SetLink sets a link's MTU (0 = unchanged) and MAC (nil = unchanged), and
// brings it up.
func (c *Conn) SetLink(index int, mtu int, mac net.HardwareAddr) error {
	ifi := unix.IfInfomsg{Family: unix.AF_UNSPEC, Index: int32(index), Flags: unix.IFF_UP, Change: unix.IFF_UP}
	body := attrs(append([]byte(nil), bytesOf(&ifi)...))
	if mtu > 0 {
		body = body.u32(unix.IFLA_MTU, uint32(mtu))
	}
	if mac != nil {
		body = body.add(unix.IFLA_ADDRESS, mac)
	}
	if _, err := c.request(unix.RTM_NEWLINK, 0, body); err != nil {
		return fmt.Errorf("netlink: set link %d up (mtu %d, mac %s): %w", index, mtu, mac, err)
	}
	return nil
}

// DeleteLink deletes a link.
func (c *Conn) DeleteLink(index int) error {
	if _, err := c.request(unix.RTM_DELLINK, 0, bytesOf(&unix.IfInfomsg{Family: unix.AF_UNSPEC, Index: int32(index)})); err != nil {
		return fmt.Errorf("netlink: delete link %d: %w", index, err)
	}
	return nil
}

// Addr is an address of a link.
type Addr struct {
	LinkIndex int
	IPNet     net.IPNet
	// Global is false for link- and host-scope addresses (fe80::/10, lo's).
	Global bool
}

// Addrs lists the addresses of the namespace.
func (c *Conn) Addrs() ([]Addr, error) {
	msgs, err := c.request(unix.RTM_GETADDR, unix.NLM_F_DUMP, bytesOf(&unix.IfAddrmsg{Family: unix.AF_UNSPEC}))
	if err != nil {
		return nil, fmt.Errorf("netlink: list addresses: %w", err)
	}
	var out []Addr
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWADDR || len(m.Data) < unix.SizeofIfAddrmsg {
			continue
		}
		ifa := (*unix.IfAddrmsg)(unsafe.Pointer(&m.Data[0]))
		var ip net.IP
		for _, a := range parseAttrs(m.Data[unix.SizeofIfAddrmsg:]) {
			// IFA_LOCAL is the address itself on point-to-point links;
			// otherwise IFA_ADDRESS is.
			if a.typ == unix.IFA_LOCAL || (a.typ == unix.IFA_ADDRESS && ip == nil) {
				ip = net.IP(append([]byte(nil), a.value...))
			}
		}
		if ip == nil {
			continue
		}
		bits := 8 * len(ip)
		out = append(out, Addr{
			LinkIndex: int(ifa.Index),
			IPNet:     net.IPNet{IP: ip, Mask: net.CIDRMask(int(ifa.Prefixlen), bits)},
			Global:    ifa.Scope == unix.RT_SCOPE_UNIVERSE,
		})
	}
	return out, nil
}

// AddAddr adds an address (with its prefix route) to a link.
func (c *Conn) AddAddr(index int, a net.IPNet) error {
	fam, ip := family(a.IP)
	ones, _ := a.Mask.Size()
	// No duplicate address detection: the address is the pod's, already
	// checked by CNI, and a tentative IPv6 address would not be usable yet.
	ifa := unix.IfAddrmsg{Family: fam, Prefixlen: uint8(ones), Flags: unix.IFA_F_NODAD, Index: uint32(index)}
	body := attrs(append([]byte(nil), bytesOf(&ifa)...)).add(unix.IFA_LOCAL, ip).add(unix.IFA_ADDRESS, ip)
	if _, err := c.request(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL, body); err != nil {
		return fmt.Errorf("netlink: add address %s to link %d: %w", a.String(), index, err)
	}
	return nil
}

// Route is a route of the main table.
type Route struct {
	// Dst is the destination; nil is the default route of Gw's family.
	Dst       *net.IPNet
	Gw        net.IP
	LinkIndex int
	Family    uint8
}

// Routes lists the unicast routes of the main table.
func (c *Conn) Routes() ([]Route, error) {
	msgs, err := c.request(unix.RTM_GETROUTE, unix.NLM_F_DUMP, bytesOf(&unix.RtMsg{Family: unix.AF_UNSPEC}))
	if err != nil {
		return nil, fmt.Errorf("netlink: list routes: %w", err)
	}
	var out []Route
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWROUTE || len(m.Data) < unix.SizeofRtMsg {
			continue
		}
		rtm := (*unix.RtMsg)(unsafe.Pointer(&m.Data[0]))
		if rtm.Table != unix.RT_TABLE_MAIN || rtm.Type != unix.RTN_UNICAST {
			continue
		}
		r := Route{Family: rtm.Family}
		for _, a := range parseAttrs(m.Data[unix.SizeofRtMsg:]) {
			switch a.typ {
			case unix.RTA_DST:
				ip := net.IP(append([]byte(nil), a.value...))
				r.Dst = &net.IPNet{IP: ip, Mask: net.CIDRMask(int(rtm.Dst_len), 8*len(ip))}
			case unix.RTA_GATEWAY:
				r.Gw = net.IP(append([]byte(nil), a.value...))
			case unix.RTA_OIF:
				if len(a.value) >= 4 {
					r.LinkIndex = int(binary.NativeEndian.Uint32(a.value))
				}
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// AddRoute adds a route through link index: via gw, or on the link when gw
// is nil; dst nil is the default route of gw's family.
func (c *Conn) AddRoute(index int, dst *net.IPNet, gw net.IP) error {
	var fam uint8
	var dstLen uint8
	body := attrs(nil)
	if dst != nil {
		f, ip := family(dst.IP)
		ones, _ := dst.Mask.Size()
		fam, dstLen = f, uint8(ones)
		body = body.add(unix.RTA_DST, ip)
	}
	scope := uint8(unix.RT_SCOPE_LINK)
	if gw != nil {
		f, ip := family(gw)
		if dst != nil && f != fam {
			return fmt.Errorf("netlink: route to %s via %s: families differ", dst, gw)
		}
		fam = f
		scope = unix.RT_SCOPE_UNIVERSE
		body = body.add(unix.RTA_GATEWAY, ip)
	}
	if fam == 0 {
		return errors.New("netlink: a route needs a destination or a gateway")
	}
	body = body.u32(unix.RTA_OIF, uint32(index))
	rtm := unix.RtMsg{Family: fam, Dst_len: dstLen, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_BOOT, Scope: scope, Type: unix.RTN_UNICAST}
	msg := append(append([]byte(nil), bytesOf(&rtm)...), body...)
	if _, err := c.request(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_EXCL, msg); err != nil {
		return fmt.Errorf("netlink: add route %s via %s dev %d: %w", describeDst(dst, fam), gw, index, err)
	}
	return nil
}

func describeDst(dst *net.IPNet, fam uint8) string {
	if dst != nil {
		return dst.String()
	}
	if fam == unix.AF_INET6 {
		return "default (IPv6)"
	}
	return "default"
}

// family returns an IP's address family and its bytes in that family.
func family(ip net.IP) (uint8, net.IP) {
	if v4 := ip.To4(); v4 != nil {
		return unix.AF_INET, v4
	}
	return unix.AF_INET6, ip.To16()
}

// CreateTap makes a persistent TAP device (no packet information header)
// with the given name and returns its link.
func (c *Conn) CreateTap(name string) (Link, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return Link{}, fmt.Errorf("netlink: TAP %s: %w (is the tun module loaded?)", name, err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return Link{}, fmt.Errorf("netlink: TAP %s: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return Link{}, fmt.Errorf("netlink: TAP %s: TUNSETIFF: %w", name, err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 1); err != nil {
		return Link{}, fmt.Errorf("netlink: TAP %s: TUNSETPERSIST: %w", name, err)
	}
	return c.LinkByName(name)
}

// Traffic control constants not in x/sys/unix (linux/pkt_cls.h,
// linux/tc_act/tc_mirred.h).
const (
	tcHIngress     = 0xFFFFFFF1
	tcIngressMajor = 0xFFFF0000
	tcaU32Sel      = 5
	tcaU32Act      = 7
	tcaActKind     = 1
	tcaActOptions  = 2
	tcaMirredParms = 2
	tcU32Terminal  = 1
	tcActStolen    = 4
	tcaEgressRedir = 1
	// filterPrio is the priority of the redirect filter.
	filterPrio = 1
)

// tcMsg is struct tcmsg.
type tcMsg struct {
	Family  uint8
	_       [3]byte
	Ifindex int32
	Handle  uint32
	Parent  uint32
	Info    uint32
}

// AddIngressQdisc adds the ingress qdisc (ffff:) to a link.
func (c *Conn) AddIngressQdisc(index int) error {
	tcm := tcMsg{Ifindex: int32(index), Handle: tcIngressMajor, Parent: tcHIngress}
	body := attrs(append([]byte(nil), bytesOf(&tcm)...)).str(unix.TCA_KIND, "ingress").add(unix.TCA_OPTIONS, nil)
	if _, err := c.request(unix.RTM_NEWQDISC, unix.NLM_F_CREATE|unix.NLM_F_EXCL, body); err != nil {
		return fmt.Errorf("netlink: add ingress qdisc to link %d: %w", index, err)
	}
	return nil
}

// DeleteIngressQdisc removes a link's ingress qdisc and its filters.
func (c *Conn) DeleteIngressQdisc(index int) error {
	tcm := tcMsg{Ifindex: int32(index), Handle: tcIngressMajor, Parent: tcHIngress}
	if _, err := c.request(unix.RTM_DELQDISC, 0, bytesOf(&tcm)); err != nil {
		return fmt.Errorf("netlink: delete ingress qdisc of link %d: %w", index, err)
	}
	return nil
}

// RedirectIngress adds to from's ingress qdisc a filter that matches every
// frame and redirects it to the egress of link to (tc's "u32 match u8 0 0
// action mirred egress redirect dev TO").
func (c *Conn) RedirectIngress(from, to int) error {
	// struct tc_u32_sel with one key {mask 0, val 0, off 0, offmask 0}.
	sel := make([]byte, 16+16)
	sel[0] = tcU32Terminal
	sel[2] = 1 // nkeys
	// struct tc_mirred: index, capab, action, refcnt, bindcnt, eaction, ifindex.
	parms := make([]byte, 28)
	binary.NativeEndian.PutUint32(parms[8:], tcActStolen)
	binary.NativeEndian.PutUint32(parms[20:], tcaEgressRedir)
	binary.NativeEndian.PutUint32(parms[24:], uint32(to))
	act := attrs(nil).str(tcaActKind, "mirred").add(tcaActOptions, attrs(nil).add(tcaMirredParms, parms))
	opts := attrs(nil).add(tcaU32Sel, sel).add(tcaU32Act, attrs(nil).add(1, act))
	var proto [2]byte
	binary.BigEndian.PutUint16(proto[:], unix.ETH_P_ALL)
	tcm := tcMsg{Ifindex: int32(from), Parent: tcIngressMajor, Info: filterPrio<<16 | uint32(binary.NativeEndian.Uint16(proto[:]))}
	body := attrs(append([]byte(nil), bytesOf(&tcm)...)).str(unix.TCA_KIND, "u32").add(unix.TCA_OPTIONS, opts)
	if _, err := c.request(unix.RTM_NEWTFILTER, unix.NLM_F_CREATE|unix.NLM_F_EXCL, body); err != nil {
		return fmt.Errorf("netlink: redirect ingress of link %d to link %d: %w", from, to, err)
	}
	return nil
}

// InNetNS runs fn on a thread that has entered the network namespace at
// path, and returns its error. The thread goes back to its own namespace
// afterwards, or, if it cannot, ends with fn's goroutine, never to run other
// code.
func InNetNS(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("network namespace %s: %w", path, err)
			return
		}
		defer unix.Close(target)
		own, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("own network namespace: %w", err)
			return
		}
		defer unix.Close(own)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering network namespace %s: %w", path, err)
			return
		}
		ferr := fn()
		if unix.Setns(own, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// InNewNetNS runs fn on a thread in a new, empty network namespace, which
// goes away with the thread when fn returns: nothing made in it outlives fn.
func InNewNetNS(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("new network namespace: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
