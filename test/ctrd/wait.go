package ctrd

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// WaitFor polls cond every poll until it holds; it fails the test once
// within has passed without it (a generous bound against a hang, not a
// timing assertion).
func WaitFor(t testing.TB, what string, within, poll time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not seen within %gs", what, within.Seconds())
		}
		time.Sleep(poll)
	}
}

// HTTPGet is the body of a GET of url, trimmed of white space; it tries
// again for about ten seconds while the server is not answering yet (each
// try bounded by 5 s).
func HTTPGet(url string) (string, error) {
	var last error
	for i := 0; i < 50; i++ {
		c := &http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get(url)
		if err == nil {
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			return strings.TrimSpace(string(b)), err
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	return "", last
}
