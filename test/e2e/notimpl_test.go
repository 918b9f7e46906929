package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/boxlite/boxlite-shim/test/ctrd"
)

// TestCtrRunReachesShim drives a real containerd 2.4 with the real ctr: the
// runtime name io.boxlite.v2 must resolve to our binary, the bootstrap and the
// task service must answer, and a run that the shim cannot serve must end in
// a clear error, with no shim process, mount or socket left behind.
func TestCtrRunReachesShim(t *testing.T) {
	d := ctrd.Start(t, ctrd.Options{})
	img := ImportBusybox(t, d)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := d.Ctr(ctx, "run", "--rm", "--runtime", "io.boxlite.v2", img, "notimpl-1", "sh", "-c", "echo hi")
	if ctx.Err() != nil {
		t.Fatalf("ctr run hung: %s", out)
	}
	if err == nil {
		t.Fatalf("ctr run succeeded, but the task service creates no containers yet: %s", out)
	}
	if !strings.Contains(out, "not implemented") {
		t.Fatalf("ctr run failed without the shim's clear error: %v\n%s", err, out)
	}
	t.Logf("ctr run: %s", strings.TrimSpace(out))
	ctrd.AssertNoLeftovers(t, d.State, filepath.Join(d.Root, "io.containerd.runtime.v2.task"))

	// containerd keeps no task record either.
	out, err = d.CtrStdout(ctx, "task", "ls", "-q")
	if err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("tasks left after the failed run: %v %q", err, out)
	}
}
