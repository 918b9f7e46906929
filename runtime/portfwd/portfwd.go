// Package portfwd makes CRI's port forwarding reach a pod's guest.
// containerd's CRI forwards a port by dialling localhost:PORT inside the
// pod's network namespace, where nothing listens: the pod's servers run in
// the micro-VM. So, in that namespace, a Forwarder listens on one loopback
// port and an nftables rule (its own table, in the pod's namespace only)
// redirects TCP connections to every other port of 127.0.0.1 there; each
// connection accepted is relayed, through the agent (Dialer), to the port it
// was addressed to (SO_ORIGINAL_DST) on the guest's loopback. Any port works
// without being known in advance.
//
// It owns the listener, the table and the relays; the agent's side of the
// stream is the agent's. The table goes with the namespace, or with Close.
package portfwd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/log"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/boxlite/boxlite-shim/runtime/netns"
	"github.com/boxlite/boxlite-shim/runtime/relay"
)

// Table is the nftables table (family ip) the Forwarder makes in the pod's
// network namespace.
const Table = "boxlite_portfwd"

// soOriginalDst is SO_ORIGINAL_DST (linux/netfilter_ipv4.h).
const soOriginalDst = 80

// Dialer opens a stream to port on the guest's loopback.
type Dialer func(ctx context.Context, port uint16) (net.Conn, error)

// Forwarder relays the pod namespace's loopback TCP connections to the guest.
type Forwarder struct {
	nsPath string
	l      *net.TCPListener
	dial   Dialer
	port   uint16
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool
}

// Start listens in the network namespace at nsPath and installs the
// redirection.
func Start(nsPath string, dial Dialer) (*Forwarder, error) {
	f := &Forwarder{nsPath: nsPath, dial: dial, conns: map[net.Conn]bool{}}
	err := netns.In(nsPath, func() error {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		f.l = l.(*net.TCPListener)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("port forwarding: listen in %s: %w", nsPath, err)
	}
	f.port = uint16(f.l.Addr().(*net.TCPAddr).Port)
	if err := f.redirect(true); err != nil {
		f.l.Close()
		return nil, fmt.Errorf("port forwarding: nftables redirection in %s: %w", nsPath, err)
	}
	f.wg.Add(1)
	go f.serve()
	return f, nil
}

// OnlyLoopback says whether the network namespace at nsPath has no
// interface but lo.
func OnlyLoopback(nsPath string) (bool, error) {
	only := true
	err := netns.In(nsPath, func() error {
		ifs, err := net.Interfaces()
		if err != nil {
			return err
		}
		for _, i := range ifs {
			if i.Flags&net.FlagLoopback == 0 {
				only = false
			}
		}
		return nil
	})
	return only, err
}

// Port is the loopback port the Forwarder listens on in the namespace.
func (f *Forwarder) Port() uint16 { return f.port }

// redirect adds (or, with add false, deletes) the table:
//
//	table ip boxlite_portfwd {
//	  chain output { type nat hook output priority dstnat;
//	    meta l4proto tcp ip daddr 127.0.0.1 tcp dport != PORT redirect to :PORT } }
func (f *Forwarder) redirect(add bool) error {
	ns, err := os.Open(f.nsPath)
	if err != nil {
		return err
	}
	defer ns.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns.Fd())))
	if err != nil {
		return err
	}
	t := &nftables.Table{Name: Table, Family: nftables.TableFamilyIPv4}
	if !add {
		c.DelTable(t)
		return c.Flush()
	}
	c.AddTable(t)
	ch := c.AddChain(&nftables.Chain{Name: "output", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest})
	port := binary.BigEndian.AppendUint16(nil, f.port)
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{127, 0, 0, 1}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: port},
		&expr.Immediate{Register: 1, Data: port},
		&expr.Redir{RegisterProtoMin: 1},
	}})
	return c.Flush()
}

func (f *Forwarder) serve() {
	defer f.wg.Done()
	for {
		c, err := f.l.AcceptTCP()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				log.L.WithError(err).Warn("port forwarding: accept")
			}
			return
		}
		if !f.track(c, true) {
			c.Close()
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer f.track(c, false)
			f.forward(c)
		}()
	}
}

// track adds or removes a connection; it refuses new ones once closed.
func (f *Forwarder) track(c net.Conn, add bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if add {
		if f.closed {
			return false
		}
		f.conns[c] = true
	} else {
		delete(f.conns, c)
	}
	return true
}

func (f *Forwarder) forward(c *net.TCPConn) {
	defer c.Close()
	port, err := originalPort(c)
	if err != nil {
		log.L.WithError(err).Warn("port forwarding: the connection's original port")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	g, err := f.dial(ctx, port)
	cancel()
	if err != nil {
		log.L.WithError(err).WithField("port", port).Warn("port forwarding to the guest")
		return
	}
	if !f.track(g, true) {
		g.Close()
		return
	}
	defer f.track(g, false)
	relay.Copy(c, g)
}

// originalPort is the port a redirected connection was addressed to (the
// listener's own when it was not redirected).
func originalPort(c *net.TCPConn) (uint16, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var port uint16
	var serr error
	err = rc.Control(func(fd uintptr) {
		// struct sockaddr_in fits in IPv6Mreq's 20 bytes.
		m, e := unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, soOriginalDst)
		if e != nil {
			serr = e
			return
		}
		port = binary.BigEndian.Uint16(m.Multiaddr[2:4])
	})
	if err == nil {
		err = serr
	}
	if errors.Is(err, syscall.ENOENT) { // not redirected: no conntrack NAT entry
		return uint16(c.LocalAddr().(*net.TCPAddr).Port), nil
	}
	return port, err
}

// Close stops listening, ends the relays and removes the table (when the
// namespace is still there).
func (f *Forwarder) Close() error {
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	err := f.l.Close()
	f.wg.Wait()
	if _, serr := os.Stat(f.nsPath); serr == nil {
		if rerr := f.redirect(false); rerr != nil {
			err = errors.Join(err, fmt.Errorf("port forwarding: remove the nftables table: %w", rerr))
		}
	}
	return err
}
