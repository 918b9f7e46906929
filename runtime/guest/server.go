package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/boxlite/boxlite-shim/runtime/agent/api"
	"github.com/boxlite/boxlite-shim/runtime/relay"
	"github.com/boxlite/boxlite-shim/runtime/version"
)

// Serve answers connections on l until Shutdown; it returns the exit code.
func (a *Agent) Serve(ctx context.Context, l net.Listener) int {
	srv, err := ttrpc.NewServer()
	if err != nil {
		log.Printf("ttrpc: %v", err)
		return 1
	}
	exit := make(chan int, 1)
	api.RegisterAgentService(srv, &service{a: a, exit: exit})
	ttrpcConns := newConnListener(l.Addr())
	go func() {
		if err := srv.Serve(ctx, ttrpcConns); err != nil && !errors.Is(err, ttrpc.ErrServerClosed) {
			log.Printf("ttrpc serve: %v", err)
		}
	}()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				log.Printf("accept: %v", err)
				time.Sleep(100 * time.Millisecond)
				continue
			}
			go a.handshake(conn, ttrpcConns)
		}
	}()
	code := <-exit
	l.Close()
	unix.Sync()
	return code
}

// handshake reads a connection's header line and routes it (agent.proto).
func (a *Agent) handshake(conn net.Conn, ttrpcConns *connListener) {
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := api.ReadLine(conn)
	conn.SetReadDeadline(time.Time{})
	if err != nil {
		if !errors.Is(err, io.ErrUnexpectedEOF) || line != "" {
			log.Printf("connection header: %v", err)
		}
		conn.Close()
		return
	}
	refuse := func(err error) {
		fmt.Fprintf(conn, "error: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		conn.Close()
	}
	switch {
	case line == api.TTRPCHeader:
		if _, err := io.WriteString(conn, api.AckOK+"\n"); err != nil {
			conn.Close()
			return
		}
		ttrpcConns.push(conn)
	case strings.HasPrefix(line, api.StdioHeaderPrefix):
		h, err := api.ParseStdioHeader(line)
		if err != nil {
			refuse(err)
			return
		}
		start, err := a.attachStream(h, conn)
		if err != nil {
			refuse(err)
			return
		}
		if _, err := io.WriteString(conn, api.AckOK+"\n"); err != nil {
			conn.Close() // start anyway: the copy drains into the void and ends
		}
		start()
	case strings.HasPrefix(line, api.PortHeaderPrefix):
		port, err := api.ParsePortHeader(line)
		if err != nil {
			refuse(err)
			return
		}
		target, err := dialLoopback(port)
		if err != nil {
			refuse(err)
			return
		}
		if _, err := io.WriteString(conn, api.AckOK+"\n"); err != nil {
			conn.Close()
			target.Close()
			return
		}
		// Both directions relayed until each ends, then both close.
		go func() {
			relay.Copy(conn, target)
			conn.Close()
			target.Close()
		}()
	default:
		refuse(fmt.Errorf("unknown connection header %q (want %q, %q... or %q...)", line, api.TTRPCHeader, api.StdioHeaderPrefix, api.PortHeaderPrefix))
	}
}

// connListener hands the ttrpc connections to the ttrpc server.
type connListener struct {
	addr   net.Addr
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *connListener) push(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.closed:
		c.Close()
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }

// service implements api.AgentService.
type service struct {
	a    *Agent
	exit chan int
}

var empty = &api.Empty{}

func rpcErr(err error) error {
	if err == nil {
		return nil
	}
	return errgrpc.ToGRPC(err)
}

func (s *service) Info(ctx context.Context, _ *api.InfoRequest) (*api.InfoResponse, error) {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	host, _ := os.Hostname()
	a := s.a
	return &api.InfoResponse{
		AgentVersion:      version.Version,
		OnHost:            a.onHost,
		Environment:       a.Environment(),
		KernelRelease:     unix.ByteSliceToString(uts.Release[:]),
		Hostname:          host,
		Pid:               uint32(os.Getpid()),
		CgroupRoot:        a.cg.root,
		CgroupControllers: a.cg.controllers,
		Warnings:          a.warnings,
	}, nil
}

func (s *service) CreateContainer(ctx context.Context, req *api.CreateContainerRequest) (*api.CreateContainerResponse, error) {
	r, err := s.a.createContainer(req)
	return r, rpcErr(err)
}

func (s *service) StartProcess(ctx context.Context, req *api.StartProcessRequest) (*api.StartProcessResponse, error) {
	c, err := s.a.container(req.ContainerId)
	if err != nil {
		return nil, rpcErr(err)
	}
	var pid int
	if req.ExecId == "" {
		pid, err = s.a.startInit(c)
	} else {
		pid, err = s.a.startExec(c, req.ExecId, req.Process, req.Stdio)
	}
	if err != nil {
		return nil, rpcErr(err)
	}
	return &api.StartProcessResponse{Pid: uint32(pid)}, nil
}

func (s *service) Wait(ctx context.Context, req *api.WaitRequest) (*api.WaitResponse, error) {
	_, p, err := s.a.process(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, rpcErr(err)
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &api.WaitResponse{ExitStatus: uint32(p.status), ExitedAt: timestamppb.New(p.exitedAt), EventsSeq: p.eventsSeq}, nil
}

func (s *service) Signal(ctx context.Context, req *api.SignalRequest) (*api.Empty, error) {
	c, p, err := s.a.process(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, rpcErr(err)
	}
	sig := unix.Signal(req.Signal)
	if req.Signal == 0 || req.Signal > 64 {
		return nil, rpcErr(fmt.Errorf("signal %d: %w", req.Signal, errdefs.ErrInvalidArgument))
	}
	if req.All {
		if req.ExecId != "" {
			return nil, rpcErr(fmt.Errorf("all=true is for the container, not exec %q: %w", req.ExecId, errdefs.ErrInvalidArgument))
		}
		return empty, rpcErr(s.a.signalAll(c, sig))
	}
	if !p.running() {
		return nil, rpcErr(fmt.Errorf("process %q of %q is not running: %w", req.ExecId, req.ContainerId, errdefs.ErrNotFound))
	}
	if err := unix.Kill(p.pid(), sig); err != nil {
		if errors.Is(err, unix.ESRCH) {
			err = fmt.Errorf("process %d: %w", p.pid(), errdefs.ErrNotFound)
		}
		return nil, rpcErr(err)
	}
	return empty, nil
}

func (s *service) ResizePty(ctx context.Context, req *api.ResizePtyRequest) (*api.Empty, error) {
	_, p, err := s.a.process(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, rpcErr(err)
	}
	pty := p.ptyFile()
	if pty == nil {
		return nil, rpcErr(fmt.Errorf("process %q of %q has no terminal: %w", req.ExecId, req.ContainerId, errdefs.ErrFailedPrecondition))
	}
	rc, err := pty.SyscallConn()
	if err != nil {
		return nil, rpcErr(err)
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(req.Height), Col: uint16(req.Width)})
	}); err != nil {
		return nil, rpcErr(err)
	}
	return empty, rpcErr(ierr)
}

func (s *service) CloseStdin(ctx context.Context, req *api.CloseStdinRequest) (*api.Empty, error) {
	_, p, err := s.a.process(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, rpcErr(err)
	}
	p.requestCloseStdin()
	return empty, nil
}

func (s *service) Pids(ctx context.Context, req *api.ContainerRequest) (*api.PidsResponse, error) {
	c, err := s.a.container(req.ContainerId)
	if err != nil {
		return nil, rpcErr(err)
	}
	pids, err := s.a.pids(c)
	if err != nil {
		return nil, rpcErr(err)
	}
	execOf := map[int]string{}
	s.a.mu.Lock()
	for id, p := range c.execs {
		if p.pid() > 0 {
			execOf[p.pid()] = id
		}
	}
	s.a.mu.Unlock()
	r := &api.PidsResponse{}
	for _, pid := range pids {
		if pid == s.a.helperPid(c, pid) {
			continue
		}
		r.Processes = append(r.Processes, &api.ProcessInfo{Pid: uint32(pid), ExecId: execOf[pid]})
	}
	return r, nil
}

// helperPid returns pid if it is an exec helper of c (not a container
// process), else 0.
func (a *Agent) helperPid(c *container, pid int) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range c.execs {
		if p.helper == pid && p.pid() != pid {
			return pid
		}
	}
	return 0
}

func (s *service) Stats(ctx context.Context, req *api.ContainerRequest) (*api.StatsResponse, error) {
	c, err := s.a.container(req.ContainerId)
	if err != nil {
		return nil, rpcErr(err)
	}
	return s.a.cg.stats(c.cgroup), nil
}

func (s *service) freeze(id string, frozen bool) error {
	c, err := s.a.container(id)
	if err != nil {
		return err
	}
	if c.cgroup == "" {
		return fmt.Errorf("container %q has no cgroup (%v): cannot freeze: %w", id, s.a.cg.err, errdefs.ErrNotImplemented)
	}
	return freeze(c.cgroup, frozen)
}

func (s *service) Pause(ctx context.Context, req *api.ContainerRequest) (*api.Empty, error) {
	return empty, rpcErr(s.freeze(req.ContainerId, true))
}

func (s *service) Resume(ctx context.Context, req *api.ContainerRequest) (*api.Empty, error) {
	return empty, rpcErr(s.freeze(req.ContainerId, false))
}

func (s *service) UpdateResources(ctx context.Context, req *api.UpdateResourcesRequest) (*api.Empty, error) {
	c, err := s.a.container(req.ContainerId)
	if err != nil {
		return nil, rpcErr(err)
	}
	res, err := parseResources(req.Resources)
	if err != nil {
		return nil, rpcErr(err)
	}
	if c.cgroup == "" {
		return nil, rpcErr(fmt.Errorf("container %q has no cgroup (%v): %w", req.ContainerId, s.a.cg.err, errdefs.ErrNotImplemented))
	}
	if _, err := s.a.cg.apply(c.cgroup, res, true); err != nil {
		return nil, rpcErr(err)
	}
	return empty, nil
}

func (s *service) NextEvent(ctx context.Context, req *api.NextEventRequest) (*api.Event, error) {
	e, err := s.a.events.next(ctx, req.AfterSeq)
	return e, rpcErr(err)
}

func (s *service) DeleteProcess(ctx context.Context, req *api.ProcessRequest) (*api.Empty, error) {
	if req.ExecId == "" {
		return nil, rpcErr(fmt.Errorf("the init process goes with DeleteContainer: %w", errdefs.ErrInvalidArgument))
	}
	c, p, err := s.a.process(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, rpcErr(err)
	}
	if p.running() {
		return nil, rpcErr(fmt.Errorf("exec %q is running: %w", req.ExecId, errdefs.ErrFailedPrecondition))
	}
	s.a.mu.Lock()
	delete(c.execs, req.ExecId)
	s.a.mu.Unlock()
	p.closeAll()
	return empty, nil
}

func (s *service) DeleteContainer(ctx context.Context, req *api.DeleteContainerRequest) (*api.Empty, error) {
	return empty, rpcErr(s.a.deleteContainer(req.ContainerId, req.Force))
}

func (s *service) Shutdown(ctx context.Context, _ *api.Empty) (*api.Empty, error) {
	log.Printf("shutdown requested")
	s.a.Shutdown()
	go func() {
		time.Sleep(100 * time.Millisecond) // let the answer go out
		s.exit <- 0
	}()
	return empty, nil
}
