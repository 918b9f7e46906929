// Command guestprobe runs inside the QEMU guest of test/qemu (static, no
// libc: busybox's networking applets need files a bare initramfs lacks). It
// fetches one URL, prints what it got as a marker on stdout, then serves a
// fixed body over HTTP until the guest is stopped.
//
//	guestprobe -fetch URL -listen ADDR -body TEXT
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	fetch := flag.String("fetch", "", "URL to GET first")
	listen := flag.String("listen", ":8080", "address to serve on")
	body := flag.String("body", "", "what to serve")
	flag.Parse()
	c := &http.Client{Timeout: 10 * time.Second}
	got, err := get(c, *fetch)
	if err != nil {
		got = "error: " + err.Error()
	}
	fmt.Printf("BOXLITE-QEMU fetched %s\n", strings.TrimSpace(got))
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Println("BOXLITE-QEMU listen-failed", err)
		os.Exit(1)
	}
	fmt.Println("BOXLITE-QEMU ready")
	fmt.Fprintln(os.Stderr, http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, *body) })))
	os.Exit(1)
}

func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
