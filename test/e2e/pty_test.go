package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// pty is a pseudo-terminal for running ctr -t: the test holds the master.
type pty struct {
	master, slave *os.File
}

// openPty opens a new pseudo-terminal of rows x cols.
func openPty(t *testing.T, rows, cols uint16) *pty {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Fatalf("ptsname: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Fatalf("open slave: %v", err)
	}
	if err := unix.IoctlSetWinsize(int(s.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
		t.Fatalf("set window size: %v", err)
	}
	p := &pty{master: m, slave: s}
	t.Cleanup(func() { p.master.Close(); p.closeSlave() })
	return p
}

// attach makes the terminal cmd's controlling terminal and stdio.
func (p *pty) attach(cmd *exec.Cmd) {
	cmd.Stdin, cmd.Stdout, cmd.Stderr = p.slave, p.slave, p.slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
}

func (p *pty) closeSlave() {
	if p.slave != nil {
		p.slave.Close()
		p.slave = nil
	}
}

// termReader collects what the terminal shows.
type termReader struct {
	mu   sync.Mutex
	cond *sync.Cond
	buf  bytes.Buffer
	err  error
}

func (p *pty) reader() *termReader {
	r := &termReader{}
	r.cond = sync.NewCond(&r.mu)
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := p.master.Read(b)
			r.mu.Lock()
			r.buf.Write(b[:n])
			if err != nil {
				r.err = err // EIO once every slave end is closed
			}
			r.cond.Broadcast()
			r.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return r
}

// waitFor waits until the output contains s or the terminal closes, and
// returns all output so far.
func (r *termReader) waitFor(s string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for !strings.Contains(r.buf.String(), s) {
		if r.err != nil {
			return r.buf.String(), fmt.Errorf("terminal closed before %q appeared (%v): %q", s, r.err, r.buf.String())
		}
		r.cond.Wait()
	}
	return r.buf.String(), nil
}
