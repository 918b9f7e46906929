// Command vmmworkload is a tiny, static (CGO_ENABLED=0) workload for the
// runtime/vmm tests. It stands in for the guest agent: run by the libkrun test
// double, it serves the vsock bridge's listening socket that it inherits as fd
// 3 (LISTEN_FDS, systemd style).
//
//	vmmworkload serve [PORT]   serve fd 3 (the default); with PORT, then say it
//	                           serves on the host's vsock PORT (as the agent does)
//	vmmworkload exit-now N     exit with status N at once
//	vmmworkload close-and-wait close fd 3 and sleep: never becomes ready
//
// Each connection is greeted with one line:
//
//	ok pid=<pid> ppid=<ppid> hostname=<h> cwd=<dir> double=<BOXLITE_TEST_DOUBLE> ports=<BOXLITE_VSOCK_PORTS>
//
// then it answers commands, one per line: "env K" prints "K=<value>";
// "links" prints its network interfaces as "name=mac ..." (sorted by
// index); "spam N" writes N bytes to its stdout (the console) and answers
// "spammed"; "exit N" makes the workload exit with status N.
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/boxlite/boxlite-shim/runtime/guest"
)

func main() {
	mode := "serve"
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	fmt.Printf("vmmworkload: %s pid=%d\n", mode, os.Getpid())
	switch mode {
	case "exit-now":
		n := 0
		if len(os.Args) > 2 {
			n, _ = strconv.Atoi(os.Args[2])
		}
		os.Exit(n)
	case "close-and-wait":
		syscall.Close(3)
		time.Sleep(time.Hour)
		return
	case "serve":
	default:
		fmt.Fprintf(os.Stderr, "vmmworkload: unknown mode %q\n", mode)
		os.Exit(2)
	}
	if os.Getenv("LISTEN_FDS") == "" || os.Getenv("LISTEN_FDS") == "0" {
		fmt.Fprintln(os.Stderr, "vmmworkload: no listening socket (LISTEN_FDS)")
		os.Exit(2)
	}
	l, err := net.FileListener(os.NewFile(3, "vsock"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmmworkload:", err)
		os.Exit(2)
	}
	if len(os.Args) > 2 {
		port, err := strconv.ParseUint(os.Args[2], 10, 32)
		if err == nil {
			err = guest.SignalReady(uint32(port))
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "vmmworkload: ready:", err)
			os.Exit(2)
		}
	}
	for {
		c, err := l.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "vmmworkload: accept:", err)
			os.Exit(2)
		}
		go serve(c)
	}
}

func serve(c net.Conn) {
	defer c.Close()
	host, _ := os.Hostname()
	cwd, _ := os.Getwd()
	fmt.Fprintf(c, "ok pid=%d ppid=%d hostname=%s cwd=%s double=%s ports=%s\n",
		os.Getpid(), os.Getppid(), host, cwd, os.Getenv("BOXLITE_TEST_DOUBLE"), os.Getenv("BOXLITE_VSOCK_PORTS"))
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		switch cmd {
		case "env":
			fmt.Fprintf(c, "%s=%s\n", arg, os.Getenv(arg))
		case "links":
			ifs, err := net.Interfaces()
			var out []string
			for _, i := range ifs {
				out = append(out, i.Name+"="+i.HardwareAddr.String())
			}
			if err != nil {
				out = append(out, "error="+err.Error())
			}
			fmt.Fprintln(c, strings.Join(out, " "))
		case "spam":
			// arg bytes of console output, then "spammed".
			n, _ := strconv.Atoi(arg)
			line := []byte(strings.Repeat("x", 1023) + "\n")
			for ; n > 0; n -= len(line) {
				os.Stdout.Write(line[:min(n, len(line))])
			}
			fmt.Fprintln(c, "spammed")
		case "exit":
			n, _ := strconv.Atoi(arg)
			fmt.Printf("vmmworkload: exit %d\n", n)
			os.Exit(n)
		default:
			fmt.Fprintf(c, "unknown command %q\n", cmd)
		}
	}
}
