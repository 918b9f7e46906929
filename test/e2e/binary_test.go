package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types"
	"google.golang.org/protobuf/proto"

	"github.com/boxlite/boxlite-shim/kernel"
	"github.com/boxlite/boxlite-shim/test/ctrd"
)

func shimBinary(t *testing.T) string {
	t.Helper()
	p := filepath.Join(ctrd.BinDir(t), "containerd-shim-boxlite-v2")
	ctrd.Require(t, p)
	return p
}

// TestBinaryVersionAndInfo runs the built binary the way containerd does for
// `-v` and `-info` (runtime options on stdin, protobuf RuntimeInfo on stdout).
func TestBinaryVersionAndInfo(t *testing.T) {
	bin := shimBinary(t)
	out, err := exec.Command(bin, "-v").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Version:") || !strings.Contains(string(out), "Embedded kernels:") {
		t.Fatalf("-v: %v\n%s", err, out)
	}

	cmd := exec.Command(bin, "-info")
	cmd.Stdin = bytes.NewReader(nil)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("-info: %v: %s", err, stderr.String())
	}
	var info types.RuntimeInfo
	if err := proto.Unmarshal(raw, &info); err != nil {
		t.Fatalf("decode RuntimeInfo: %v", err)
	}
	if info.Name != "io.containerd.boxlite.v2" || info.Annotations[kernel.Annotation] == "" {
		t.Fatalf("RuntimeInfo = %v", &info)
	}
}

// TestBinaryDelete runs `delete` as containerd does after a shim crash: in
// the bundle directory, answering a DeleteResponse; twice, since containerd
// may retry it.
func TestBinaryDelete(t *testing.T) {
	bin := shimBinary(t)
	bundle := filepath.Join(t.TempDir(), "task1")
	if err := os.MkdirAll(filepath.Join(bundle, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		cmd := exec.Command(bin, "-namespace", "boxlite-test", "-id", "task1", "-bundle", bundle, "delete")
		cmd.Dir = bundle
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		raw, err := cmd.Output()
		if err != nil {
			t.Fatalf("delete #%d: %v: %s", i+1, err, stderr.String())
		}
		var resp taskAPI.DeleteResponse
		if err := proto.Unmarshal(raw, &resp); err != nil {
			t.Fatalf("decode DeleteResponse: %v", err)
		}
		if resp.ExitStatus != 137 || resp.ExitedAt == nil {
			t.Fatalf("delete #%d answered %v", i+1, &resp)
		}
	}
}
