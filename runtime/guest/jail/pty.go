package jail

import (
	"fmt"
	"os"
	"strconv"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// openPty allocates a PTY in the container's devpts, hands the master to the
// agent and returns the slave.
func openPty(sync int, size *specs.Box) (*os.File, error) {
	ptmx := "/dev/pts/ptmx"
	if _, err := os.Stat(ptmx); err != nil {
		ptmx = "/dev/ptmx"
	}
	master, err := unix.Open(ptmx, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", ptmx, err)
	}
	defer unix.Close(master)
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		return nil, fmt.Errorf("unlockpt: %w", err)
	}
	n, err := unix.IoctlGetUint32(master, unix.TIOCGPTN)
	if err != nil {
		return nil, fmt.Errorf("ptsname: %w", err)
	}
	name := "/dev/pts/" + strconv.Itoa(int(n))
	slave, err := os.OpenFile(name, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	if size != nil && size.Width > 0 && size.Height > 0 {
		_ = unix.IoctlSetWinsize(master, unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(size.Height), Col: uint16(size.Width)})
	}
	if err := sendSyncFd(sync, Msg{Type: MsgPty}, master); err != nil {
		slave.Close()
		return nil, fmt.Errorf("send pty master: %w", err)
	}
	return slave, nil
}

// takeTerminal makes slave the controlling terminal and stdio of this process.
func takeTerminal(slave *os.File) error {
	if _, err := unix.Setsid(); err != nil {
		return fmt.Errorf("setsid: %w", err)
	}
	fd := int(slave.Fd())
	if err := unix.IoctlSetInt(fd, unix.TIOCSCTTY, 0); err != nil {
		return fmt.Errorf("set controlling terminal: %w", err)
	}
	for i := 0; i < 3; i++ {
		if err := unix.Dup3(fd, i, 0); err != nil {
			return fmt.Errorf("dup terminal: %w", err)
		}
	}
	if fd > 2 {
		slave.Close()
	}
	return nil
}
