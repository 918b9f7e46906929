package jail

import (
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// syncPair is both ends of a sync socket, closed at the end of the test.
func syncPair(t *testing.T) (*Conn, int) {
	t.Helper()
	agent, child, err := NewSyncPair()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		agent.Close()
		child.Close()
	})
	return agent, int(child.Fd())
}

func TestSyncMessages(t *testing.T) {
	agent, child := syncPair(t)

	// child → agent, in order, one with a file descriptor.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for _, m := range []struct {
		msg  Msg
		pass int
	}{
		{Msg{Type: MsgPty}, int(w.Fd())},
		{Msg{Type: MsgPid, Pid: 42}, -1},
		{Msg{Type: MsgError, Error: "exec /bin/nope: no such file"}, -1},
	} {
		if err := sendSyncFd(child, m.msg, m.pass); err != nil {
			t.Fatal(err)
		}
	}
	m, fd, err := agent.Recv(time.Second)
	if err != nil || m.Type != MsgPty || fd < 0 {
		t.Fatalf("Recv = %+v, fd %d, %v; want pty with an fd", m, fd, err)
	}
	if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("passed fd %d: flags %#x, %v; want close-on-exec", fd, flags, err)
	}
	passed := os.NewFile(uintptr(fd), "passed")
	if _, err := passed.Write([]byte("x")); err != nil {
		t.Errorf("write to the passed fd: %v", err)
	}
	passed.Close()
	buf := make([]byte, 1)
	if n, err := r.Read(buf); n != 1 || err != nil || buf[0] != 'x' {
		t.Errorf("the passed fd is not the pipe: read %q, %v", buf[:n], err)
	}
	if m, fd, err := agent.Recv(time.Second); err != nil || m != (Msg{Type: MsgPid, Pid: 42}) || fd != -1 {
		t.Errorf("Recv = %+v, fd %d, %v; want pid 42, no fd", m, fd, err)
	}
	if m, _, err := agent.Recv(time.Second); err != nil || m.Type != MsgError || m.Error != "exec /bin/nope: no such file" {
		t.Errorf("Recv = %+v, %v; want the error", m, err)
	}

	// Nothing more: the deadline.
	if _, _, err := agent.Recv(50 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Recv with nothing sent: %v; want a deadline error", err)
	}

	// agent → child.
	if err := agent.Send(Msg{Type: MsgStart}); err != nil {
		t.Fatal(err)
	}
	if m, err := recvSyncFd(child); err != nil || m.Type != MsgStart {
		t.Errorf("recvSyncFd = %+v, %v; want start", m, err)
	}
}

func TestSyncMessagesEnd(t *testing.T) {
	t.Run("the child's end closed", func(t *testing.T) {
		agent, child, err := NewSyncPair()
		if err != nil {
			t.Fatal(err)
		}
		defer agent.Close()
		child.Close() // as exec does: the child's end is close-on-exec
		if _, _, err := agent.Recv(time.Second); !errors.Is(err, io.EOF) {
			t.Errorf("Recv: %v; want EOF", err)
		}
	})
	t.Run("not JSON", func(t *testing.T) {
		agent, child := syncPair(t)
		if err := unix.Sendmsg(child, []byte("{nope"), nil, nil, 0); err != nil {
			t.Fatal(err)
		}
		if _, fd, err := agent.Recv(time.Second); err == nil || fd != -1 {
			t.Errorf("Recv = fd %d, %v; want an error and no fd", fd, err)
		}
	})
	t.Run("the agent's end closed", func(t *testing.T) {
		agent, child, err := NewSyncPair()
		if err != nil {
			t.Fatal(err)
		}
		defer child.Close()
		agent.Close()
		if _, err := recvSyncFd(int(child.Fd())); !errors.Is(err, io.EOF) {
			t.Errorf("recvSyncFd: %v; want EOF", err)
		}
	})
}
