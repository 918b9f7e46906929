package guest

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestAwaitClose: SignalReady keeps the ready connection until the shim
// closes it, and no longer than its bound when the shim does not.
func TestAwaitClose(t *testing.T) {
	for _, tc := range []struct {
		name      string
		peerClose bool
		atLeast   time.Duration
	}{
		{"the shim closes", true, 0},
		{"the shim keeps it", false, 200 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
			if tc.peerClose {
				go func() { time.Sleep(50 * time.Millisecond); unix.Close(fds[1]) }()
			}
			start := time.Now()
			awaitClose(fds[0], 200*time.Millisecond)
			took := time.Since(start)
			if took < tc.atLeast {
				t.Errorf("returned after %s, before the bound %s while the peer kept the connection", took, tc.atLeast)
			}
			if tc.peerClose && took >= 200*time.Millisecond {
				t.Errorf("returned after %s: want it to return when the peer closed (50 ms)", took)
			}
		})
	}
}
