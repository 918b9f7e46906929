// Package stdio opens the stdio that containerd names for a process (the
// fifos of the task API's stdin/stdout/stderr fields) on the shim's side and
// hands them out as an agent.IO, so that the agent client copies between them
// and the agent's stdio streams.
//
// It owns the shim's ends of those fifos and closes them; it must not talk to
// the agent nor decide when a process's output is complete (the caller closes
// the outputs once the agent's streams have been drained).
package stdio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"sync"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/containerd/fifo"

	"github.com/boxlite/boxlite-shim/runtime/agent"
)

// Paths are the stdio names containerd gives for one process.
type Paths struct {
	Stdin, Stdout, Stderr string
	Terminal              bool
}

// Pipes are a process's opened stdio.
type Pipes struct {
	Paths
	stdin          io.ReadCloser
	stdout, stderr io.Writer
	outClosers     []io.Closer
	once           sync.Once
}

// Open opens the shim's ends: stdin for reading (without waiting for a
// writer), stdout and stderr for writing. With Terminal, stderr is not used
// (the terminal's output, stderr included, goes to stdout). A name that is
// neither a fifo nor a file (e.g. a binary:// logger) is refused with
// errdefs.ErrNotImplemented.
func Open(ctx context.Context, p Paths) (_ *Pipes, retErr error) {
	ps := &Pipes{Paths: p}
	defer func() {
		if retErr != nil {
			ps.Close()
		}
	}()
	if p.Stdin != "" {
		f, err := fifo.OpenFifo(context.WithoutCancel(ctx), p.Stdin, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, fmt.Errorf("open stdin %s: %w", p.Stdin, err)
		}
		ps.stdin = f
	}
	var err error
	if ps.stdout, err = ps.openOutput(ctx, p.Stdout); err != nil {
		return nil, fmt.Errorf("open stdout: %w", err)
	}
	if !p.Terminal {
		if p.Stderr != "" && p.Stderr == p.Stdout {
			ps.stderr = ps.stdout
		} else if ps.stderr, err = ps.openOutput(ctx, p.Stderr); err != nil {
			return nil, fmt.Errorf("open stderr: %w", err)
		}
	}
	return ps, nil
}

// openOutput opens one output: a fifo (with a reader of our own kept open,
// as containerd's runc shim does, so that writes never fail while the
// client reattaches), or a file to append to.
func (ps *Pipes) openOutput(ctx context.Context, name string) (io.Writer, error) {
	if name == "" {
		return nil, nil
	}
	path := name
	if u, err := url.Parse(name); err == nil && u.Scheme != "" {
		if u.Scheme != "file" && u.Scheme != "fifo" {
			return nil, fmt.Errorf("stdio %q: the %s:// scheme is not supported by this shim (fifos and files are): %w", name, u.Scheme, errdefs.ErrNotImplemented)
		}
		path = u.Path
	}
	st, err := os.Stat(path)
	if err == nil && st.Mode()&os.ModeNamedPipe == 0 {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return nil, err
		}
		ps.outClosers = append(ps.outClosers, f)
		return f, nil
	}
	w, err := fifo.OpenFifo(ctx, path, syscall.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("fifo %s: %w", path, err)
	}
	ps.outClosers = append(ps.outClosers, w)
	r, err := fifo.OpenFifo(ctx, path, syscall.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("fifo %s: %w", path, err)
	}
	ps.outClosers = append(ps.outClosers, r)
	return w, nil
}

// IO is the agent client's view of the pipes.
func (ps *Pipes) IO() agent.IO {
	pio := agent.IO{Terminal: ps.Terminal}
	if ps.stdin != nil {
		pio.Stdin = ps.stdin
	}
	if ps.stdout != nil {
		pio.Stdout = ps.stdout
	}
	if ps.stderr != nil && !ps.Terminal {
		pio.Stderr = ps.stderr
	}
	return pio
}

// Close closes every end the shim holds. Call it once the process's output
// has been copied out (agent.Attached.Wait), so that the client sees EOF
// after the last byte.
func (ps *Pipes) Close() {
	ps.once.Do(func() {
		var errs []error
		if ps.stdin != nil {
			errs = append(errs, ps.stdin.Close())
		}
		for _, c := range ps.outClosers {
			errs = append(errs, c.Close())
		}
		_ = errors.Join(errs...)
	})
}
