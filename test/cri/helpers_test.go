package cri

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/boxlite/boxlite-shim/runtime/sandbox"
	"github.com/boxlite/boxlite-shim/test/crid"
	"github.com/boxlite/boxlite-shim/test/ctrd"
)

// env is test/crid's environment (a private containerd with CRI, the
// boxlite drop-in, a runc handler to compare with, a CNI network, the
// images, crictl) with this suite's helpers.
type env struct{ *crid.Env }

func newEnv(t *testing.T) *env {
	t.Helper()
	return &env{crid.New(t, crid.Options{ExtraCRIConfig: crid.RuncHandler()})}
}

// calls reads the test double's call log of a pod's VMM: the last line of
// each call.
func calls(t *testing.T, r sandbox.Record) map[string]map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.Dir, "vmm", "krun-calls.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var c map[string]any
		if err := json.Unmarshal([]byte(l), &c); err != nil {
			t.Fatalf("call log line %q: %v", l, err)
		}
		out[fmt.Sprint(c["call"])] = c
	}
	return out
}

// kernelSHAs are the SHA-256 prefixes `kernels` reports for each variant.
func kernelSHAs(t *testing.T, cfg string) map[string]string {
	t.Helper()
	out, err := exec.Command(filepath.Join(ctrd.BinDir(t), "containerd-shim-boxlite-v2"), "kernels", "-config", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("kernels: %v\n%s", err, out)
	}
	// The variants table (SOURCE is "embedded" or "path"); the hardening
	// table after it has other columns.
	shas := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[0] != "VARIANT" && (f[2] == "embedded" || f[2] == "path") {
			shas[f[0]] = f[3]
		}
	}
	return shas
}
