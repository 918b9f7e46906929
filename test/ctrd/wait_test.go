package ctrd

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// WaitFor returns once cond holds, polling it.
func TestWaitFor(t *testing.T) {
	n := 0
	WaitFor(t, "the third poll", 10*time.Second, time.Millisecond, func() bool { n++; return n == 3 })
	if n != 3 {
		t.Errorf("cond polled %d times, want 3", n)
	}
}

func TestHTTPGet(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, " hello\n") }))
	t.Cleanup(srv.Close)
	// A port nothing listens on (yet): HTTPGet tries again, then fails.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	for _, tc := range []struct {
		name, url, want string
		fails           bool
	}{
		{name: "answers", url: srv.URL, want: "hello"},
		{name: "nothing listens", url: "http://" + closed + "/", fails: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := HTTPGet(tc.url)
			if (err != nil) != tc.fails || got != tc.want {
				t.Errorf("HTTPGet(%s) = %q, %v; want %q (fails: %v)", tc.url, got, err, tc.want, tc.fails)
			}
		})
	}
}
