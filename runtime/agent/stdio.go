package agent

import (
	"context"
	"io"
	"net"
	"sync"

	"github.com/boxlite/boxlite-shim/runtime/agent/api"
)

// IO is a process's stdio on the shim's side: nil means none (the process
// gets /dev/null). With Terminal the process has a PTY: Stdout receives the
// terminal's output (stderr included) and Stderr is unused.
type IO struct {
	Stdin    io.Reader
	Stdout   io.Writer
	Stderr   io.Writer
	Terminal bool
}

// Config is the StdioConfig the agent gets for pio.
func (pio IO) Config() *api.StdioConfig {
	return &api.StdioConfig{
		Stdin:    pio.Stdin != nil,
		Stdout:   pio.Stdout != nil,
		Stderr:   pio.Stderr != nil && !pio.Terminal,
		Terminal: pio.Terminal,
	}
}

// Attached is a process's stdio streams, being copied.
type Attached struct {
	c             *Client
	id, execID    string
	stdinMu       sync.Mutex
	stdin         net.Conn
	stdinClosed   bool
	outputs       sync.WaitGroup
	conns         []net.Conn
	closeOnce     sync.Once
	stdinCopyDone chan struct{}
}

// Attach opens the process's stdio streams and starts copying: stdin from
// pio.Stdin until it ends (then the process's stdin is closed), the agent's
// stdout and stderr into pio's writers. Attach before Start (init) or as part
// of Exec.
func (c *Client) Attach(ctx context.Context, id, execID string, pio IO) (*Attached, error) {
	a := &Attached{c: c, id: id, execID: execID, stdinCopyDone: make(chan struct{})}
	open := func(stream string) (net.Conn, error) {
		conn, err := dialHeader(ctx, c.dial, api.StdioHeader{Container: id, Exec: execID, Stream: stream}.Line())
		if err != nil {
			return nil, err
		}
		a.conns = append(a.conns, conn)
		return conn, nil
	}
	type out struct {
		stream string
		w      io.Writer
	}
	var outs []out
	if pio.Stdout != nil {
		outs = append(outs, out{api.StreamStdout, pio.Stdout})
	}
	if pio.Stderr != nil && !pio.Terminal {
		outs = append(outs, out{api.StreamStderr, pio.Stderr})
	}
	var opened []struct {
		conn net.Conn
		w    io.Writer
	}
	for _, o := range outs {
		conn, err := open(o.stream)
		if err != nil {
			a.Close()
			return nil, err
		}
		opened = append(opened, struct {
			conn net.Conn
			w    io.Writer
		}{conn, o.w})
	}
	if pio.Stdin != nil {
		conn, err := open(api.StreamStdin)
		if err != nil {
			a.Close()
			return nil, err
		}
		a.stdin = conn
	}
	for _, o := range opened {
		a.outputs.Add(1)
		go func(conn net.Conn, w io.Writer) {
			defer a.outputs.Done()
			_, _ = io.Copy(w, conn)
			conn.Close()
		}(o.conn, o.w)
	}
	if a.stdin != nil {
		go a.copyStdin(pio.Stdin)
	} else {
		close(a.stdinCopyDone)
	}
	return a, nil
}

func (a *Attached) copyStdin(r io.Reader) {
	defer close(a.stdinCopyDone)
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			a.stdinMu.Lock()
			if a.stdinClosed {
				a.stdinMu.Unlock()
				return
			}
			_, werr := a.stdin.Write(buf[:n])
			a.stdinMu.Unlock()
			if werr != nil {
				return
			}
		}
		if err != nil {
			a.closeStdinConn() // EOF: the agent closes the process's stdin
			return
		}
	}
}

func (a *Attached) closeStdinConn() {
	a.stdinMu.Lock()
	defer a.stdinMu.Unlock()
	if a.stdin != nil && !a.stdinClosed {
		a.stdinClosed = true
		a.stdin.Close()
	}
}

// CloseStdin ends the stdin stream after what was already sent, and has the
// agent close the process's stdin (containerd's CloseIO).
func (a *Attached) CloseStdin(ctx context.Context) error {
	a.closeStdinConn()
	return a.c.CloseStdin(ctx, a.id, a.execID)
}

// Wait waits until stdout and stderr have been copied to their end.
func (a *Attached) Wait() {
	a.outputs.Wait()
}

// Close tears every stream down.
func (a *Attached) Close() {
	a.closeOnce.Do(func() {
		a.closeStdinConn()
		for _, c := range a.conns {
			c.Close()
		}
	})
}
