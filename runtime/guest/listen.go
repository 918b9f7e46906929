package guest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Listen returns the agent's listener: the inherited socket for port when
// LISTEN_FDS is set (systemd-style socket activation, as the libkrun test
// double does), else a new AF_VSOCK socket on port.
func Listen(port uint32) (net.Listener, error) {
	nfds := os.Getenv("LISTEN_FDS")
	if nfds == "" || nfds == "0" {
		return listenVsock(port)
	}
	n, err := strconv.Atoi(nfds)
	if err != nil || n < 1 {
		return nil, fmt.Errorf("LISTEN_FDS=%q: not a count", nfds)
	}
	if p := os.Getenv("LISTEN_PID"); p != "" && p != strconv.Itoa(os.Getpid()) {
		return nil, fmt.Errorf("LISTEN_PID=%s is not this process (%d)", p, os.Getpid())
	}
	idx := 0
	if ports := os.Getenv("BOXLITE_VSOCK_PORTS"); ports != "" {
		idx = -1
		for i, s := range strings.Split(ports, ",") {
			if s == strconv.FormatUint(uint64(port), 10) {
				idx = i
				break
			}
		}
		if idx < 0 || idx >= n {
			return nil, fmt.Errorf("port %d is not among the inherited sockets (BOXLITE_VSOCK_PORTS=%s, LISTEN_FDS=%d)", port, ports, n)
		}
	} else if n != 1 {
		return nil, fmt.Errorf("LISTEN_FDS=%d but no BOXLITE_VSOCK_PORTS to tell which is port %d", n, port)
	}
	// Keep the other inherited sockets away from our children.
	for i := 0; i < n; i++ {
		unix.CloseOnExec(3 + i)
	}
	f := os.NewFile(uintptr(3+idx), "listen-fd-"+strconv.Itoa(3+idx))
	defer f.Close()
	l, err := net.FileListener(f)
	if err != nil {
		// A family the net package does not know (vsock): serve it raw.
		fd, derr := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 3)
		if derr != nil {
			return nil, fmt.Errorf("inherited fd %d: %v (%v)", 3+idx, err, derr)
		}
		return newRawListener(fd, fmt.Sprintf("fd:%d", 3+idx))
	}
	return l, nil
}

func listenVsock(port uint32) (net.Listener, error) {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("vsock socket: %w (is this a VM with a vsock device?)", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: port}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vsock bind port %d: %w", port, err)
	}
	if err := unix.Listen(fd, 128); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vsock listen: %w", err)
	}
	return newRawListener(fd, fmt.Sprintf("vsock:%d", port))
}

// rawListener is a net.Listener over a listening socket of any family, driven
// by the runtime's poller.
type rawListener struct {
	f    *os.File
	addr rawAddr
}

type rawAddr string

func (a rawAddr) Network() string { return "raw" }
func (a rawAddr) String() string  { return string(a) }

func newRawListener(fd int, name string) (*rawListener, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &rawListener{f: os.NewFile(uintptr(fd), name), addr: rawAddr(name)}, nil
}

func (l *rawListener) Accept() (net.Conn, error) {
	rc, err := l.f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var nfd int
	var aerr error
	err = rc.Read(func(fd uintptr) bool {
		nfd, _, aerr = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		return !errors.Is(aerr, unix.EAGAIN)
	})
	if err != nil {
		return nil, err
	}
	if aerr != nil {
		return nil, aerr
	}
	return &rawConn{File: os.NewFile(uintptr(nfd), string(l.addr)), local: l.addr}, nil
}

func (l *rawListener) Close() error   { return l.f.Close() }
func (l *rawListener) Addr() net.Addr { return l.addr }

// rawConn is an accepted connection of a rawListener.
type rawConn struct {
	*os.File
	local rawAddr
}

func (c *rawConn) LocalAddr() net.Addr  { return c.local }
func (c *rawConn) RemoteAddr() net.Addr { return rawAddr("peer") }
func (c *rawConn) SetDeadline(t time.Time) error {
	return c.File.SetDeadline(t)
}
