package guest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/boxlite/boxlite-shim/runtime/agent/api"
)

// SignalReady tells the shim that the agent serves: it connects to vsock
// port of the host (which the VMM bridges to a socket the shim listens on:
// krun_add_vsock_port2 with listen=false) and sends api.ReadyLine. The shim waits
// for that, or for the VMM's end, instead of probing the agent's socket.
// Under the libkrun test double the connection comes from the double's
// connector (BOXLITE_VSOCK_CONNECTOR_FD).
func SignalReady(port uint32) error {
	fd, err := dialHost(port)
	if err != nil {
		return fmt.Errorf("ready port %d: %w", port, err)
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte(api.ReadyLine)); err != nil {
		return fmt.Errorf("ready port %d: %w", port, err)
	}
	awaitClose(fd, readyLinger)
	return nil
}

// readyLinger bounds how long SignalReady waits for the shim to close the
// ready connection.
var readyLinger = 2 * time.Second

// awaitClose keeps fd open until its peer closes it (the shim does once it
// has read the line), for at most d: a guest that closed at once could have
// its connection reset before a vsock proxy delivered the line (seen under
// the emulated engine's vhost-device-vsock: the shim read EOF and nothing).
// Whatever ends the wait, the line was written.
func awaitClose(fd int, d time.Duration) {
	tv := unix.NsecToTimeval(d.Nanoseconds())
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	buf := make([]byte, 64)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		n, err := unix.Read(fd, buf)
		if n == 0 && err == nil {
			return // the shim closed it
		}
		if err != nil && err != unix.EINTR {
			return
		}
	}
}

// dialHost connects to vsock port of the host (CID 2) and returns the
// socket.
func dialHost(port uint32) (int, error) {
	if s := os.Getenv("BOXLITE_VSOCK_CONNECTOR_FD"); s != "" {
		return dialThroughConnector(s, port)
	}
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("vsock socket: %w (is this a VM with a vsock device?)", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_HOST, Port: port}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("vsock connect to the host's port %d: %w", port, err)
	}
	return fd, nil
}

// dialThroughConnector asks the test double's connector (a SEQPACKET socket
// at fd s) for a connection to port: it sends the port number and gets the
// connected socket back.
func dialThroughConnector(s string, port uint32) (int, error) {
	cfd, err := strconv.Atoi(s)
	if err != nil || cfd < 3 {
		return -1, fmt.Errorf("BOXLITE_VSOCK_CONNECTOR_FD=%q: not a descriptor", s)
	}
	unix.CloseOnExec(cfd) // not for the containers
	req := binary.NativeEndian.AppendUint32(nil, port)
	if _, err := unix.Write(cfd, req); err != nil {
		return -1, fmt.Errorf("connector: %w", err)
	}
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(cfd, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("connector: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return -1, errors.New("connector: no socket in its answer")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return -1, errors.New("connector: no socket in its answer")
	}
	return fds[0], nil
}
