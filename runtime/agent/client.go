// Package agent is the shim's client of the guest agent (cmd/boxlite-agent).
//
// The agent serves the API in runtime/agent/api over one vsock port, which
// libkrun bridges to a Unix socket on the host. Control calls travel over one
// ttrpc connection; each stdio stream has a connection of its own (see
// api/agent.proto for the wire protocol and why).
//
// A container's life, seen from here:
//
//	c, _ := agent.Dial(ctx, socketPath)
//	res, att, _ := c.Create(ctx, id, spec, rootfs, agent.IO{Stdout: w, Stderr: e})
//	c.Start(ctx, id)
//	st, _ := c.Wait(ctx, id, "")     // exited; output written out by the agent
//	att.Wait()                        // ...and copied into w and e here
//	c.Delete(ctx, id, false)
//
// An exec process: pid, att, err := c.Exec(ctx, id, execID, process, io),
// then Wait(ctx, id, execID), att.Wait(), DeleteProcess(ctx, id, execID).
// Errors are containerd errdefs errors (errdefs.IsNotFound, ...).
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/boxlite/boxlite-shim/runtime/agent/api"
)

// Client talks to one guest agent.
type Client struct {
	name string // the socket, for messages
	dial Dialer
	conn net.Conn
	tc   *ttrpc.Client
	api  api.AgentService
}

// Dialer opens a new connection to the agent's socket.
type Dialer func(ctx context.Context) (net.Conn, error)

// Dial connects to the agent behind socketPath (see DialWith).
func Dial(ctx context.Context, socketPath string) (*Client, error) {
	return DialWith(ctx, socketPath, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socketPath)
	})
}

// Connect connects to the agent through dial once, without retrying: for a
// guest that has said it serves (see api.ReadyLine).
func Connect(ctx context.Context, name string, dial Dialer) (*Client, error) {
	conn, err := dialHeader(ctx, dial, api.TTRPCHeader+"\n")
	if err != nil {
		return nil, fmt.Errorf("agent at %s: %w", name, err)
	}
	tc := ttrpc.NewClient(conn)
	return &Client{name: name, dial: dial, conn: conn, tc: tc, api: api.NewAgentClient(tc)}, nil
}

// DialWith connects to the agent through dial (name names its socket in
// messages); the client uses dial again for each stdio stream. While the
// agent is not answering yet (the socket is missing, refuses, or the bridge
// closes the connection because nothing listens in the guest yet) it retries
// until ctx is done; an agent that answers the header with an error is not
// retried.
func DialWith(ctx context.Context, name string, dial Dialer) (*Client, error) {
	delay := 10 * time.Millisecond
	for {
		c, err := Connect(ctx, name, dial)
		if err == nil {
			return c, nil
		}
		var refused *refusedError
		if errors.As(err, &refused) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("agent at %s: %w (last error: %v)", name, ctx.Err(), err)
		case <-time.After(delay):
		}
		if delay < 200*time.Millisecond {
			delay *= 2
		}
	}
}

type refusedError struct{ msg string }

func (e *refusedError) Error() string { return e.msg }

// dialHeader opens a connection and exchanges the header line.
func dialHeader(ctx context.Context, dial Dialer, header string) (net.Conn, error) {
	conn, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	conn.SetDeadline(deadline)
	if _, err := io.WriteString(conn, header); err != nil {
		conn.Close()
		return nil, err
	}
	line, err := api.ReadLine(conn)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("agent handshake: %w", err)
	}
	conn.SetDeadline(time.Time{})
	if line != api.AckOK {
		conn.Close()
		return nil, &refusedError{msg: "agent: " + strings.TrimPrefix(line, "error: ")}
	}
	return conn, nil
}

// DialPort opens a stream to port on the guest's loopback (in the pod's
// network as the guest's containers have it): port forwarding.
func (c *Client) DialPort(ctx context.Context, port uint16) (net.Conn, error) {
	conn, err := dialHeader(ctx, c.dial, api.PortHeader(port))
	if err != nil {
		return nil, fmt.Errorf("agent at %s: %w", c.name, err)
	}
	return conn, nil
}

// Close closes the control connection (attached streams live on).
func (c *Client) Close() error { return c.tc.Close() }

// native turns a ttrpc error into a containerd errdefs error; a call that
// failed because ctx ended returns ctx's error.
func native(err error) error {
	if err == nil {
		return nil
	}
	return errgrpc.ToNative(err)
}

func nativeCtx(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return native(err)
}

// Info says what the agent is and where it runs.
func (c *Client) Info(ctx context.Context) (*api.InfoResponse, error) {
	r, err := c.api.Info(ctx, &api.InfoRequest{})
	return r, native(err)
}

// Create creates a container whose init waits for Start, and attaches its
// stdio as pio says. rootfs is the guest path of its root filesystem.
func (c *Client) Create(ctx context.Context, id string, spec *specs.Spec, rootfs string, pio IO) (*api.CreateContainerResponse, *Attached, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, nil, err
	}
	r, err := c.api.CreateContainer(ctx, &api.CreateContainerRequest{Id: id, Spec: b, Rootfs: rootfs, Stdio: pio.Config()})
	if err != nil {
		return nil, nil, native(err)
	}
	att, err := c.Attach(ctx, id, "", pio)
	if err != nil {
		_, _ = c.api.DeleteContainer(ctx, &api.DeleteContainerRequest{ContainerId: id, Force: true})
		return nil, nil, err
	}
	return r, att, nil
}

// Start starts a created container's init and returns its guest PID.
func (c *Client) Start(ctx context.Context, id string) (int, error) {
	r, err := c.api.StartProcess(ctx, &api.StartProcessRequest{ContainerId: id})
	if err != nil {
		return 0, native(err)
	}
	return int(r.Pid), nil
}

// Exec attaches pio and starts proc as execID in the running container id.
func (c *Client) Exec(ctx context.Context, id, execID string, proc *specs.Process, pio IO) (int, *Attached, error) {
	b, err := json.Marshal(proc)
	if err != nil {
		return 0, nil, err
	}
	att, err := c.Attach(ctx, id, execID, pio)
	if err != nil {
		return 0, nil, err
	}
	r, err := c.api.StartProcess(ctx, &api.StartProcessRequest{ContainerId: id, ExecId: execID, Process: b, Stdio: pio.Config()})
	if err != nil {
		att.Close()
		return 0, nil, native(err)
	}
	return int(r.Pid), att, nil
}

// ExitStatus is how a process ended.
type ExitStatus struct {
	// Status is the exit code, or 128+signal.
	Status   uint32
	ExitedAt time.Time
	// EventsSeq: events up to this sequence number happened before the exit.
	EventsSeq uint64
}

// Wait waits for a process (execID "" = init) to exit and for the agent to
// have written out its output.
func (c *Client) Wait(ctx context.Context, id, execID string) (ExitStatus, error) {
	r, err := c.api.Wait(ctx, &api.WaitRequest{ContainerId: id, ExecId: execID})
	if err != nil {
		return ExitStatus{}, nativeCtx(ctx, err)
	}
	return ExitStatus{Status: r.ExitStatus, ExitedAt: r.ExitedAt.AsTime(), EventsSeq: r.EventsSeq}, nil
}

// Signal signals one process, or with all every process of the container.
func (c *Client) Signal(ctx context.Context, id, execID string, sig syscall.Signal, all bool) error {
	_, err := c.api.Signal(ctx, &api.SignalRequest{ContainerId: id, ExecId: execID, Signal: uint32(sig), All: all})
	return native(err)
}

// ResizePty sets the window size of a process's terminal.
func (c *Client) ResizePty(ctx context.Context, id, execID string, width, height uint32) error {
	_, err := c.api.ResizePty(ctx, &api.ResizePtyRequest{ContainerId: id, ExecId: execID, Width: width, Height: height})
	return native(err)
}

// CloseStdin asks the agent to close a process's stdin once its stdin stream
// ends. Attached.CloseStdin ends the stream and then calls this.
func (c *Client) CloseStdin(ctx context.Context, id, execID string) error {
	_, err := c.api.CloseStdin(ctx, &api.CloseStdinRequest{ContainerId: id, ExecId: execID})
	return native(err)
}

// Pids lists the container's processes.
func (c *Client) Pids(ctx context.Context, id string) ([]*api.ProcessInfo, error) {
	r, err := c.api.Pids(ctx, &api.ContainerRequest{ContainerId: id})
	if err != nil {
		return nil, native(err)
	}
	return r.Processes, nil
}

// Stats reads the container's cgroup v2 statistics.
func (c *Client) Stats(ctx context.Context, id string) (*api.StatsResponse, error) {
	r, err := c.api.Stats(ctx, &api.ContainerRequest{ContainerId: id})
	return r, native(err)
}

// Pause freezes the container.
func (c *Client) Pause(ctx context.Context, id string) error {
	_, err := c.api.Pause(ctx, &api.ContainerRequest{ContainerId: id})
	return native(err)
}

// Resume thaws the container.
func (c *Client) Resume(ctx context.Context, id string) error {
	_, err := c.api.Resume(ctx, &api.ContainerRequest{ContainerId: id})
	return native(err)
}

// Update applies new resource limits.
func (c *Client) Update(ctx context.Context, id string, res *specs.LinuxResources) error {
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	_, err = c.api.UpdateResources(ctx, &api.UpdateResourcesRequest{ContainerId: id, Resources: b})
	return native(err)
}

// NextEvent waits for the first event after afterSeq.
func (c *Client) NextEvent(ctx context.Context, afterSeq uint64) (*api.Event, error) {
	r, err := c.api.NextEvent(ctx, &api.NextEventRequest{AfterSeq: afterSeq})
	return r, nativeCtx(ctx, err)
}

// DeleteProcess forgets an exited exec process.
func (c *Client) DeleteProcess(ctx context.Context, id, execID string) error {
	_, err := c.api.DeleteProcess(ctx, &api.ProcessRequest{ContainerId: id, ExecId: execID})
	return native(err)
}

// Delete removes a container whose init has exited (force: kill it first).
func (c *Client) Delete(ctx context.Context, id string, force bool) error {
	_, err := c.api.DeleteContainer(ctx, &api.DeleteContainerRequest{ContainerId: id, Force: force})
	return native(err)
}

// Shutdown kills every container and ends the agent.
func (c *Client) Shutdown(ctx context.Context) error {
	_, err := c.api.Shutdown(ctx, &api.Empty{})
	return native(err)
}
