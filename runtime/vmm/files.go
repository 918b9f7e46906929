package vmm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The VMM can write everything in its state directory (it is inside its
// jail), and it is untrusted: the shim opens what is there only beneath the
// directory's descriptor, taken before the VMM ran, and never through a link.

// noLinks resolves beneath the directory and follows no link of any kind.
const noLinks = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// openIn opens name in dir (flags as for open(2)) without following a link.
func openIn(dir *os.File, name string, flags int) (*os.File, error) {
	fd, err := unix.Openat2(int(dir.Fd()), name, &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC | unix.O_NOFOLLOW),
		Resolve: noLinks,
	})
	if err != nil {
		return nil, &os.PathError{Op: "openat2", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}

// DialAgent connects to the agent's socket (AgentSocket). The socket is
// opened first, without following a link, and must be a socket; the
// connection goes through that descriptor, so a link the VMM put in its
// place cannot send the shim to another socket of the host.
func (v *VMM) DialAgent(ctx context.Context) (net.Conn, error) {
	f, err := openIn(v.state, AgentSocketName, unix.O_PATH)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil, fmt.Errorf("%s is not a socket (mode %#o)", v.AgentSocket(), st.Mode)
	}
	var d net.Dialer
	return d.DialContext(ctx, "unix", fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
}

// consoleCopier keeps the guest console: libkrun writes it to a FIFO in the
// state directory, and this copies it into console.log, which it rotates to
// console.log.1 when it reaches max bytes, so that a guest cannot fill the
// host's memory (the state directory is on a tmpfs) with console output.
type consoleCopier struct {
	dir    int
	max    int64
	r, w   *os.File // the FIFO: w is held so that reads wait for a writer
	done   chan struct{}
	mu     sync.Mutex
	out    *os.File
	size   int64
	closed bool
	// read and kept count the bytes taken from the FIFO and those handled
	// (written or dropped): settle compares them.
	read, kept atomic.Int64
}

func startConsole(dir int, max int64) (*consoleCopier, error) {
	if max <= 0 {
		max = DefaultConsoleLogMax
	}
	if err := unix.Mkfifoat(dir, consolePipeName, 0o600); err != nil {
		return nil, err
	}
	c := &consoleCopier{dir: dir, max: max, done: make(chan struct{})}
	var err error
	if c.out, err = c.create(); err != nil {
		return nil, err
	}
	for _, end := range []struct {
		f     **os.File
		flags int
	}{{&c.r, unix.O_RDONLY | unix.O_NONBLOCK}, {&c.w, unix.O_WRONLY | unix.O_NONBLOCK}} {
		fd, err := unix.Openat2(dir, consolePipeName, &unix.OpenHow{Flags: uint64(end.flags | unix.O_CLOEXEC | unix.O_NOFOLLOW), Resolve: noLinks})
		if err != nil {
			for _, f := range []*os.File{c.r, c.w, c.out} {
				if f != nil {
					f.Close()
				}
			}
			return nil, fmt.Errorf("opening %s: %w", consolePipeName, err)
		}
		*end.f = os.NewFile(uintptr(fd), consolePipeName)
	}
	go c.copy()
	return c, nil
}

// create makes a new console.log.
func (c *consoleCopier) create() (*os.File, error) {
	fd, err := unix.Openat2(c.dir, ConsoleLogName, &unix.OpenHow{
		Flags:   unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_CLOEXEC | unix.O_NOFOLLOW,
		Mode:    0o600,
		Resolve: noLinks,
	})
	if errors.Is(err, unix.EEXIST) {
		// Put there by the VMM: it goes.
		_ = unix.Unlinkat(c.dir, ConsoleLogName, 0)
		return c.create()
	}
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", ConsoleLogName, err)
	}
	return os.NewFile(uintptr(fd), ConsoleLogName), nil
}

func (c *consoleCopier) copy() {
	defer close(c.done)
	buf := make([]byte, 32<<10)
	for {
		n, err := c.r.Read(buf)
		if n > 0 {
			c.read.Add(int64(n))
			c.write(buf[:n])
			c.kept.Add(int64(n))
		}
		if err != nil {
			return
		}
	}
}

func (c *consoleCopier) write(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.out == nil {
		return
	}
	if c.size+int64(len(p)) > c.max && c.size > 0 {
		c.out.Close()
		c.out = nil
		_ = unix.Renameat(c.dir, ConsoleLogName, c.dir, ConsoleLogName+".1")
		out, err := c.create()
		if err != nil {
			return // nothing more is kept
		}
		c.out, c.size = out, 0
	}
	n, _ := c.out.Write(p)
	c.size += int64(n)
}

// settle waits (at most max) until what is in the FIFO has been copied into
// console.log: nothing left to read, and everything read handled, seen twice
// 5 ms apart (a read may have returned and not been counted yet).
func (c *consoleCopier) settle(max time.Duration) {
	deadline := time.Now().Add(max)
	quiet := 0
	for quiet < 2 && time.Now().Before(deadline) {
		select {
		case <-c.done:
			return
		default:
		}
		n, err := unix.IoctlGetInt(int(c.r.Fd()), unix.TIOCINQ) // FIONREAD
		if err == nil && n == 0 && c.read.Load() == c.kept.Load() {
			quiet++
		} else {
			quiet = 0
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// close stops the copy once what the VMM wrote has been read (the VMM is
// gone by then), and closes the files.
func (c *consoleCopier) close() {
	if c.w != nil {
		c.w.Close()
	}
	if c.r != nil {
		select {
		case <-c.done:
		case <-time.After(time.Second):
			// A writer is still around (it cannot be the VMM's group,
			// which is gone): stop reading.
			_ = c.r.SetReadDeadline(time.Now())
			<-c.done
		}
		c.r.Close()
	}
	c.mu.Lock()
	if c.out != nil {
		c.out.Close()
		c.out = nil
	}
	c.mu.Unlock()
}
