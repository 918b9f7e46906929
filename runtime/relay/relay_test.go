package relay

import (
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair is both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// A request/response exchange goes through: each side's EOF reaches the
// other as a half-close, and Copy returns once both directions ended.
func TestCopy(t *testing.T) {
	for _, tc := range []struct {
		name     string
		req, rsp string
	}{
		{name: "both ways", req: "GET / HTTP/1.0\r\n\r\n", rsp: "hello"},
		{name: "nothing back", req: "ping"},
		{name: "nothing sent", rsp: "banner"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, a := tcpPair(t)   // the user's connection, relayed from a
			b, server := tcpPair(t) // relayed to b, served by server
			done := make(chan struct{})
			go func() { Copy(a, b); close(done) }()

			go func() {
				io.WriteString(user, tc.req)
				user.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(server)
			if err != nil || string(got) != tc.req {
				t.Fatalf("server read %q, %v; want %q", got, err, tc.req)
			}
			io.WriteString(server, tc.rsp)
			server.(*net.TCPConn).CloseWrite()
			back, err := io.ReadAll(user)
			if err != nil || string(back) != tc.rsp {
				t.Fatalf("user read %q, %v; want %q", back, err, tc.rsp)
			}
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Copy did not return after both directions ended")
			}
		})
	}
}
