package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// The connection preamble (see agent.proto): every connection to the agent
// starts with one header line from the client and one answer line from the
// agent.
const (
	// TTRPCHeader opens a connection that then carries ttrpc.
	TTRPCHeader = "boxlite-ttrpc/1"
	// StdioHeaderPrefix opens a stdio stream; a JSON StdioHeader follows.
	StdioHeaderPrefix = "boxlite-stdio/1 "
	// PortHeaderPrefix opens a TCP stream to a port of the guest's
	// loopback (port forwarding); the port's number follows. Once the
	// agent answers AckOK, the connection carries the stream's bytes.
	PortHeaderPrefix = "boxlite-port/1 "
	// AckOK is the agent's answer when it accepts the header; otherwise it
	// answers "error: <reason>" and closes the connection.
	AckOK = "ok"
	// MaxHeaderLen bounds a header line, newline included.
	MaxHeaderLen = 4096
	// ReadyLine is the one line the agent sends on the ready port (a vsock
	// port of the host it connects to) once it serves: the shim waits for
	// it instead of probing the agent's socket.
	ReadyLine = "boxlite-ready/1\n"
)

// Stream names of a stdio connection.
const (
	StreamStdin  = "stdin"
	StreamStdout = "stdout"
	StreamStderr = "stderr"
)

// StdioHeader names the process and stream a stdio connection carries.
type StdioHeader struct {
	Container string `json:"container"`
	Exec      string `json:"exec"`
	Stream    string `json:"stream"`
}

// Line encodes h as a header line, newline included.
func (h StdioHeader) Line() string {
	b, _ := json.Marshal(h)
	return StdioHeaderPrefix + string(b) + "\n"
}

// ParseStdioHeader decodes a header line (without its newline) that starts
// with StdioHeaderPrefix.
func ParseStdioHeader(line string) (StdioHeader, error) {
	var h StdioHeader
	rest, ok := strings.CutPrefix(line, StdioHeaderPrefix)
	if !ok {
		return h, fmt.Errorf("not a stdio header: %q", line)
	}
	if err := json.Unmarshal([]byte(rest), &h); err != nil {
		return h, fmt.Errorf("stdio header: %w", err)
	}
	switch h.Stream {
	case StreamStdin, StreamStdout, StreamStderr:
	default:
		return h, fmt.Errorf("stdio header: unknown stream %q", h.Stream)
	}
	if h.Container == "" {
		return h, errors.New("stdio header: no container id")
	}
	return h, nil
}

// PortHeader is the header line of a port stream, newline included.
func PortHeader(port uint16) string { return fmt.Sprintf("%s%d\n", PortHeaderPrefix, port) }

// ParsePortHeader decodes a header line (without its newline) that starts
// with PortHeaderPrefix.
func ParsePortHeader(line string) (uint16, error) {
	rest, ok := strings.CutPrefix(line, PortHeaderPrefix)
	if !ok {
		return 0, fmt.Errorf("not a port header: %q", line)
	}
	port, err := strconv.ParseUint(rest, 10, 16)
	if err != nil || port == 0 {
		return 0, fmt.Errorf("port header: bad port %q", rest)
	}
	return uint16(port), nil
}

// ReadLine reads one '\n'-terminated line of at most MaxHeaderLen bytes, one
// byte at a time so that nothing after the line is consumed. The newline is
// not returned.
func ReadLine(r io.Reader) (string, error) {
	var buf []byte
	b := make([]byte, 1)
	for len(buf) < MaxHeaderLen {
		n, err := r.Read(b)
		if n == 1 {
			if b[0] == '\n' {
				return string(buf), nil
			}
			buf = append(buf, b[0])
			continue
		}
		if err == io.EOF {
			return string(buf), io.ErrUnexpectedEOF
		}
		if err != nil {
			return string(buf), err
		}
	}
	return string(buf), errors.New("header line too long")
}
