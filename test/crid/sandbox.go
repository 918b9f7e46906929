package crid

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/boxlite/boxlite-shim/runtime/sandbox"
	"github.com/boxlite/boxlite-shim/test/sandboxtest"
)

// Record is a pod's sandbox state record (boxlite-sandbox.json in the
// sandbox task's bundle: the VMM's PID, the sandbox directory).
func (e *Env) Record(t testing.TB, podID string) sandbox.Record {
	t.Helper()
	return sandboxtest.Record(t, e.Bundle(podID))
}

// MappedKernel is the SHA-256 of the one libkrunfw.so.5 the process pid
// (a VMM) has mapped, read through /proc/PID/map_files, which reaches the
// mapped file itself wherever the VMM's jail put it.
func MappedKernel(t testing.TB, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatalf("maps of VMM %d: %v", pid, err)
	}
	var path, region string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 6 && strings.HasSuffix(f[5], "libkrunfw.so.5") {
			if path != "" && path != f[5] {
				t.Fatalf("VMM %d maps two kernel libraries: %s and %s", pid, path, f[5])
			}
			if path == "" {
				path, region = f[5], f[0]
			}
		}
	}
	if path == "" {
		t.Fatalf("VMM %d has no libkrunfw.so.5 mapped", pid)
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/map_files/%s", pid, region))
	if err != nil {
		t.Fatalf("VMM %d: the mapped %s: %v", pid, path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
