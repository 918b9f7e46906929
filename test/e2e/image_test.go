// Package e2e drives a private containerd 2.4 with the real ctr (and crictl)
// through the shim, and checks that nothing of ours outlives a test.
package e2e

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/boxlite/boxlite-shim/test/ctrd"
	"github.com/boxlite/boxlite-shim/test/ocitest"
)

// ImportBusybox builds the busybox test image locally and imports it into d.
func ImportBusybox(t testing.TB, d *ctrd.Daemon) string {
	t.Helper()
	busybox := filepath.Join(ctrd.Deps(), "busybox", "busybox")
	ctrd.Require(t, busybox)
	archive := filepath.Join(t.TempDir(), "busybox-oci.tar")
	if err := ocitest.BusyboxImage(busybox, archive, ocitest.ImageName); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := d.Ctr(ctx, "image", "import", archive); err != nil {
		t.Fatalf("ctr image import: %v\n%s", err, out)
	}
	return ocitest.ImageName
}
