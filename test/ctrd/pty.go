package ctrd

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

// Pty is a pseudo-terminal for running ctr -t: the test holds the master.
type Pty struct {
	Master *os.File
	slave  *os.File
}

// OpenPty opens a new pseudo-terminal of rows x cols; t.Cleanup closes it.
func OpenPty(t testing.TB, rows, cols uint16) *Pty {
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
	p := &Pty{Master: m, slave: s}
	t.Cleanup(func() { p.Master.Close(); p.CloseSlave() })
	return p
}

// Attach makes the terminal cmd's controlling terminal and stdio.
func (p *Pty) Attach(cmd *exec.Cmd) {
	cmd.Stdin, cmd.Stdout, cmd.Stderr = p.slave, p.slave, p.slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
}

// CloseSlave closes the test's copy of the terminal's slave end (once the
// command that uses it has started).
func (p *Pty) CloseSlave() {
	if p.slave != nil {
		p.slave.Close()
		p.slave = nil
	}
}

// Resize sets the terminal's size, as a terminal emulator does when its
// window changes: the kernel sends SIGWINCH to the terminal's foreground
// process group (ctr, which then resizes the task's terminal).
func (p *Pty) Resize(rows, cols uint16) error {
	return unix.IoctlSetWinsize(int(p.Master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
}

// TermReader collects what the terminal shows.
type TermReader struct {
	mu   sync.Mutex
	cond *sync.Cond
	buf  bytes.Buffer
	err  error
}

// Reader starts collecting what the terminal shows.
func (p *Pty) Reader() *TermReader {
	r := &TermReader{}
	r.cond = sync.NewCond(&r.mu)
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := p.Master.Read(b)
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

// WaitFor waits until the output contains s or the terminal closes, and
// returns all output so far.
func (r *TermReader) WaitFor(s string) (string, error) {
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
