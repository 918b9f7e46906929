// Package relay copies a stream connection both ways: the shim's port
// forwarder (runtime/portfwd) and the guest agent's side of a forwarded port
// (runtime/guest) relay with it. It owns only the copying; the connections
// stay the caller's to close. It imports nothing but the standard library:
// the guest agent is one static binary.
package relay

import (
	"io"
	"net"
	"sync"
)

// Copy copies a and b into each other until both directions end: EOF on one
// side closes the other's write half (or, with no write half, the other), so
// that a request/response exchange completes.
func Copy(a, b net.Conn) {
	var wg sync.WaitGroup
	half := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = dst.Close()
		}
	}
	wg.Add(2)
	go half(a, b)
	go half(b, a)
	wg.Wait()
}
