package guest

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/boxlite/boxlite-shim/runtime/agent/api"
	"github.com/boxlite/boxlite-shim/runtime/guest/jail"
)

// process is the container's init (execID "") or an exec process.
type process struct {
	c            *container
	execID       string
	stdio        *api.StdioConfig
	pidv         atomic.Int32 // guest PID, once known
	helper       int          // exec: the exec-process helper's PID
	helperExited chan struct{}
	helperStatus int
	sync         *jail.Conn // until started

	// The agent's ends of the process's stdio.
	stdinW  *os.File // pipe to stdin (non-terminal)
	stdoutR *os.File // pipe from stdout (non-terminal)
	stderrR *os.File // pipe from stderr (non-terminal)
	pty     *os.File // PTY master (terminal)

	mu       sync.Mutex
	started  bool
	reserved map[string]bool
	outputs  []chan struct{}          // one per attached output stream, closed when drained
	outCh    map[string]chan struct{} // the same, by stream
	stdinIn  bool                     // a stdin stream is attached and copying
	stdinCls bool                     // close stdin when the stream ends (always, for non-terminal)

	exited    chan struct{}
	exitOnce  sync.Once
	status    int
	exitedAt  time.Time
	eventsSeq uint64
	done      chan struct{} // exited and output drained
}

func newProcess(c *container, execID string, stdio *api.StdioConfig) *process {
	p := &process{c: c, execID: execID, stdio: stdio, reserved: map[string]bool{}, outCh: map[string]chan struct{}{}, exited: make(chan struct{}), done: make(chan struct{}), helperExited: make(chan struct{})}
	go p.finish()
	return p
}

// onExit is the reaper's handler for the process's PID.
func (p *process) onExit(status int, at time.Time) {
	a := p.c.a
	if p.c.cgroup != "" {
		a.checkOOM(p.c) // an OOM event precedes the exit it caused
	}
	p.markExited(status, at, a.events.last())
}

func (p *process) markExited(status int, at time.Time, seq uint64) {
	p.exitOnce.Do(func() {
		p.eventsSeq = seq
		p.status, p.exitedAt = status, at
		close(p.exited)
	})
}

// abandon ends the record of a process that never ran (or whose child
// could not be started), releasing whatever waits on it.
func (p *process) abandon() {
	if p.pid() <= 0 {
		p.markExited(255, time.Now(), 0)
	}
	p.closeAll()
}

// onHelperExit is the reaper's handler for an exec helper's PID.
func (p *process) onHelperExit(status int, _ time.Time) {
	p.helperStatus = status
	close(p.helperExited)
}

func (p *process) pid() int { return int(p.pidv.Load()) }

func (p *process) running() bool {
	if p == nil || p.pid() <= 0 {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *process) isStarted() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.started
}

func (p *process) kill() {
	if p.running() {
		unix.Kill(p.pid(), unix.SIGKILL)
	}
}

// makeStdio creates the process's stdio and returns the child's ends (the
// caller closes them after the fork).
func (p *process) makeStdio() ([3]*os.File, error) {
	var child [3]*os.File
	devnull := func() (*os.File, error) { return os.OpenFile(os.DevNull, os.O_RDWR, 0) }
	var err error
	cleanup := func() {
		for _, f := range child {
			closeQuietly(f)
		}
		p.closeAll()
	}
	if p.stdio.Terminal {
		for i := range child {
			if child[i], err = devnull(); err != nil {
				cleanup()
				return child, err
			}
		}
		return child, nil
	}
	if p.stdio.Stdin {
		child[0], p.stdinW, err = os.Pipe()
	} else {
		child[0], err = devnull()
	}
	if err == nil && p.stdio.Stdout {
		p.stdoutR, child[1], err = os.Pipe()
	} else if err == nil {
		child[1], err = devnull()
	}
	if err == nil && p.stdio.Stderr {
		p.stderrR, child[2], err = os.Pipe()
	} else if err == nil {
		child[2], err = devnull()
	}
	if err != nil {
		cleanup()
		return child, fmt.Errorf("stdio: %w", err)
	}
	return child, nil
}

func (p *process) setPty(fd int) {
	unix.SetNonblock(fd, true)
	p.mu.Lock()
	p.pty = os.NewFile(uintptr(fd), "pty-master")
	p.mu.Unlock()
}

func (p *process) ptyFile() *os.File {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pty
}

// reserveLocked checks that stream may be attached and marks it so.
func (p *process) reserveLocked(stream string) error {
	want := false
	switch stream {
	case api.StreamStdin:
		want = p.stdio.Stdin
	case api.StreamStdout:
		want = p.stdio.Stdout || p.stdio.Terminal
	case api.StreamStderr:
		want = p.stdio.Stderr && !p.stdio.Terminal
	}
	if !want {
		return fmt.Errorf("%s was not asked for in the process's stdio config: %w", stream, errdefs.ErrInvalidArgument)
	}
	if p.reserved[stream] {
		return fmt.Errorf("%s already attached: %w", stream, errdefs.ErrAlreadyExists)
	}
	p.reserved[stream] = true
	if stream != api.StreamStdin {
		// Counted from now: the process may exit before the copy starts.
		ch := make(chan struct{})
		p.outputs = append(p.outputs, ch)
		p.outCh[stream] = ch
	}
	return nil
}

// checkAttachedLocked: every stream asked for must be attached before start.
func (p *process) checkAttachedLocked() error {
	need := map[string]bool{
		api.StreamStdin:  p.stdio.Stdin,
		api.StreamStdout: p.stdio.Stdout,
		api.StreamStderr: p.stdio.Stderr && !p.stdio.Terminal,
	}
	for _, s := range []string{api.StreamStdin, api.StreamStdout, api.StreamStderr} {
		if need[s] && !p.reserved[s] {
			return fmt.Errorf("%s is in the stdio config but no %s stream is attached: attach it before StartProcess: %w", s, s, errdefs.ErrFailedPrecondition)
		}
	}
	return nil
}

// startStream starts copying between a reserved stream and its connection.
func (p *process) startStream(stream string, conn net.Conn) {
	switch stream {
	case api.StreamStdin:
		w := p.stdinW
		if p.stdio.Terminal {
			w = p.pty
		}
		p.mu.Lock()
		p.stdinIn = true
		p.mu.Unlock()
		go p.copyIn(w, conn)
	default:
		r := p.stdoutR
		if stream == api.StreamStderr {
			r = p.stderrR
		}
		if p.stdio.Terminal {
			r = p.pty
		}
		p.mu.Lock()
		ch := p.outCh[stream]
		p.mu.Unlock()
		go p.copyOut(r, conn, ch)
	}
}

func (p *process) copyIn(w *os.File, conn net.Conn) {
	defer conn.Close()
	if w != nil {
		_, _ = io.Copy(w, conn)
	}
	if !p.stdio.Terminal {
		p.closeStdin()
	}
}

// closeStdin closes the process's stdin pipe.
func (p *process) closeStdin() {
	p.mu.Lock()
	w := p.stdinW
	p.stdinW = nil
	p.mu.Unlock()
	closeQuietly(w)
}

// requestCloseStdin: CloseStdin. With a stream attached its EOF closes stdin;
// without, close now. A PTY is left open (as runc does).
func (p *process) requestCloseStdin() {
	p.mu.Lock()
	streaming := p.stdinIn
	p.stdinCls = true
	p.mu.Unlock()
	if !streaming && !p.stdio.Terminal {
		p.closeStdin()
	}
}

func (p *process) copyOut(r *os.File, conn net.Conn, done chan struct{}) {
	defer close(done)
	defer conn.Close()
	if r == nil {
		return
	}
	buf := make([]byte, 32<<10)
	var werr error
	for {
		n, err := r.Read(buf)
		if n > 0 && werr == nil {
			_, werr = conn.Write(buf[:n])
			// On a write error keep reading: the process must not block.
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, unix.EIO) && !errors.Is(err, os.ErrClosed) {
				log.Printf("container %s exec %q: output: %v", p.c.id, p.execID, err)
			}
			return
		}
	}
}

// finish waits for the exit, then for the output streams to drain, and marks
// the process done. Output held open by processes left behind is cut off
// after outputGrace, once nothing unread remains.
func (p *process) finish() {
	<-p.exited
	p.mu.Lock()
	outs := p.outputs
	p.mu.Unlock()
	all := make(chan struct{})
	go func() {
		for _, ch := range outs {
			<-ch
		}
		close(all)
	}()
	select {
	case <-all:
	case <-time.After(outputGrace):
		p.cutOutputs(all)
	}
	close(p.done)
}

// cutOutputs closes the output pipes once nothing unread is left in them, and
// waits for the copies to end.
func (p *process) cutOutputs(all chan struct{}) {
	for p.unread() > 0 {
		select {
		case <-all:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	p.closeOutputs()
	<-all
}

// unread counts the bytes still waiting in the output pipes or PTY.
func (p *process) unread() int {
	n := 0
	for _, f := range []*os.File{p.stdoutR, p.stderrR, p.pty} {
		if f == nil {
			continue
		}
		rc, err := f.SyscallConn()
		if err != nil {
			continue
		}
		rc.Control(func(fd uintptr) {
			if v, err := unix.IoctlGetInt(int(fd), unix.TIOCINQ); err == nil {
				n += v
			}
		})
	}
	return n
}

func (p *process) closeOutputs() {
	closeQuietly(p.stdoutR)
	closeQuietly(p.stderrR)
	if p.pty != nil {
		closeQuietly(p.pty)
	}
}

// closeAll releases everything the agent holds for the process.
func (p *process) closeAll() {
	p.closeStdin()
	p.closeOutputs()
	if p.sync != nil {
		p.sync.Close()
	}
}

// closeQuietly closes c, ignoring the error: for cleanup paths.
func closeQuietly(c io.Closer) {
	if c != nil {
		_ = c.Close()
	}
}
