package jail

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Msg is a message on the SOCK_SEQPACKET socket between the agent and a
// child it starts (fd 4 in the child): one JSON object per packet, a PTY
// master riding along a "pty" message as SCM_RIGHTS.
//
//	child → agent: {"type":"pty"}+fd, {"type":"ready"}, {"type":"pid","pid":N},
//	               {"type":"error","error":"..."}
//	agent → child: {"type":"start"} (init), {"type":"ack"} (exec, after "pid")
//
// The child's end is close-on-exec: EOF after "start" means the container's
// program was executed.
type Msg struct {
	Type  string `json:"type"`
	Error string `json:"error,omitempty"`
	Pid   int    `json:"pid,omitempty"`
}

// The types of Msg.
const (
	MsgPty   = "pty"   // child → agent, with the PTY master
	MsgReady = "ready" // child → agent: the init is ready to start
	MsgPid   = "pid"   // child → agent: the exec'd program's PID
	MsgError = "error" // child → agent: why the child gives up
	MsgStart = "start" // agent → init: exec the program
	MsgAck   = "ack"   // agent → exec helper: the PID is registered
)

const syncMax = 64 << 10

func sendSyncFd(fd int, m Msg, pass int) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	var oob []byte
	if pass >= 0 {
		oob = unix.UnixRights(pass)
	}
	return unix.Sendmsg(fd, b, oob, nil, 0)
}

// recvSyncFd reads one message, blocking (the child's side).
func recvSyncFd(fd int) (Msg, error) {
	var m Msg
	buf := make([]byte, syncMax)
	for {
		n, _, _, _, err := unix.Recvmsg(fd, buf, nil, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return m, err
		}
		if n == 0 {
			return m, io.EOF
		}
		return m, json.Unmarshal(buf[:n], &m)
	}
}

// Conn is the agent's end of the socket.
type Conn struct {
	f *os.File
}

// NewSyncPair makes the socket: the agent's end, and the child's, to pass as
// its fd 4.
func NewSyncPair() (*Conn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, nil, err
	}
	return &Conn{f: os.NewFile(uintptr(fds[0]), "sync")}, os.NewFile(uintptr(fds[1]), "sync-child"), nil
}

// Send sends m to the child.
func (s *Conn) Send(m Msg) error {
	rc, err := s.f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Write(func(fd uintptr) bool {
		serr = sendSyncFd(int(fd), m, -1)
		return !errors.Is(serr, unix.EAGAIN)
	})
	if err != nil {
		return err
	}
	return serr
}

// Recv reads one message and the fd that came with it (-1 if none), or
// io.EOF once the child's end is closed.
func (s *Conn) Recv(timeout time.Duration) (Msg, int, error) {
	var m Msg
	rc, err := s.f.SyscallConn()
	if err != nil {
		return m, -1, err
	}
	if timeout > 0 {
		s.f.SetReadDeadline(time.Now().Add(timeout))
		defer s.f.SetReadDeadline(time.Time{})
	}
	buf := make([]byte, syncMax)
	oob := make([]byte, unix.CmsgSpace(4*4))
	var n, oobn int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_CMSG_CLOEXEC)
		return !errors.Is(rerr, unix.EAGAIN)
	})
	if err != nil {
		return m, -1, err
	}
	if rerr != nil {
		return m, -1, rerr
	}
	passed := -1
	if oobn > 0 {
		scms, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err == nil {
			for _, scm := range scms {
				fds, err := unix.ParseUnixRights(&scm)
				if err != nil {
					continue
				}
				for _, fd := range fds {
					if passed < 0 {
						passed = fd
					} else {
						unix.Close(fd)
					}
				}
			}
		}
	}
	if n == 0 && passed < 0 {
		return m, -1, io.EOF
	}
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		if passed >= 0 {
			unix.Close(passed)
		}
		return m, -1, fmt.Errorf("bad message from child: %w", err)
	}
	return m, passed, nil
}

// Close closes the agent's end.
func (s *Conn) Close() error { return s.f.Close() }
