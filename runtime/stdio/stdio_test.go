package stdio

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/fifo"
)

func TestOpenFifosAndFiles(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stdin, stdout := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	stderr := filepath.Join(dir, "err.log")
	for _, p := range []string{stdin, stdout} {
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(stderr, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// The client's ends, as containerd's cio opens them.
	outR, err := fifo.OpenFifo(ctx, stdout, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	inW, err := fifo.OpenFifo(ctx, stdin, syscall.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}

	ps, err := Open(ctx, Paths{Stdin: stdin, Stdout: stdout, Stderr: "file://" + stderr})
	if err != nil {
		t.Fatal(err)
	}
	pio := ps.IO()
	if pio.Stdin == nil || pio.Stdout == nil || pio.Stderr == nil || pio.Terminal {
		t.Fatalf("IO = %+v", pio)
	}
	if _, err := inW.Write([]byte("to stdin")); err != nil {
		t.Fatal(err)
	}
	inW.Close()
	b, err := io.ReadAll(pio.Stdin)
	if err != nil || string(b) != "to stdin" {
		t.Errorf("stdin read %q, %v", b, err)
	}
	if _, err := pio.Stdout.Write([]byte("to stdout")); err != nil {
		t.Fatal(err)
	}
	if _, err := pio.Stderr.Write([]byte("to stderr")); err != nil {
		t.Fatal(err)
	}
	ps.Close()
	ps.Close() // idempotent
	b, _ = io.ReadAll(outR)
	if string(b) != "to stdout" {
		t.Errorf("stdout fifo got %q", b)
	}
	if b, _ := os.ReadFile(stderr); string(b) != "to stderr" {
		t.Errorf("stderr file got %q", b)
	}
}

func TestOpenTerminalHasNoStderr(t *testing.T) {
	ps, err := Open(context.Background(), Paths{Terminal: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	if pio := ps.IO(); pio.Stdin != nil || pio.Stdout != nil || pio.Stderr != nil || !pio.Terminal {
		t.Errorf("IO = %+v", pio)
	}
}

func TestOpenRefusesLoggerBinaries(t *testing.T) {
	_, err := Open(context.Background(), Paths{Stdout: "binary:///usr/bin/logger?x=1"})
	if !errdefs.IsNotImplemented(err) {
		t.Errorf("binary:// stdout: %v", err)
	}
}
