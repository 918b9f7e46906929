package netlink_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/boxlite/boxlite-shim/runtime/netlink"
	"github.com/boxlite/boxlite-shim/test/netnstest"
)

// The kernel's answers to bad requests come back as errors that say what
// was asked; a missing link is os.ErrNotExist.
func TestErrors(t *testing.T) {
	ns := netnstest.New(t)
	netnstest.Sh(t, ns, "ip link set lo up")
	_, n, _ := net.ParseCIDR("10.5.0.0/16")
	for _, tc := range []struct {
		name string
		do   func(c *netlink.Conn) error
		is   error
		want string
	}{
		{"missing link", func(c *netlink.Conn) error { _, err := c.LinkByName("nope0"); return err }, os.ErrNotExist, `no link "nope0"`},
		{"address on a missing link", func(c *netlink.Conn) error { return c.AddAddr(999, *n) }, unix.ENODEV, "add address 10.5.0.0/16 to link 999"},
		{"route with neither destination nor gateway", func(c *netlink.Conn) error { return c.AddRoute(1, nil, nil) }, nil, "needs a destination or a gateway"},
		{"route families differ", func(c *netlink.Conn) error { return c.AddRoute(1, n, net.ParseIP("fd00::1")) }, nil, "families differ"},
		{"unreachable gateway", func(c *netlink.Conn) error { return c.AddRoute(1, nil, net.ParseIP("10.6.0.1")) }, unix.ENETUNREACH, "add route default via 10.6.0.1 dev 1"},
		{"ingress qdisc twice", func(c *netlink.Conn) error {
			if err := c.AddIngressQdisc(1); err != nil {
				return err
			}
			return c.AddIngressQdisc(1)
		}, unix.EEXIST, "add ingress qdisc to link 1"},
		{"delete a missing qdisc", func(c *netlink.Conn) error { return c.DeleteIngressQdisc(999) }, unix.ENODEV, "delete ingress qdisc of link 999"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := netlink.InNetNS(ns, func() error {
				c, err := netlink.Open()
				if err != nil {
					return err
				}
				defer c.Close()
				return tc.do(c)
			})
			if err == nil || !strings.Contains(err.Error(), tc.want) || tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("got %v, want %q (%v)", err, tc.want, tc.is)
			}
		})
	}
	if err := netlink.InNetNS(filepath.Join(t.TempDir(), "gone"), func() error { return nil }); err == nil || !strings.Contains(err.Error(), "gone") {
		t.Errorf("InNetNS of a missing namespace: %v", err)
	}
}
