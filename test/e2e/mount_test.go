package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/boxlite/boxlite-shim/test/ctrd"
)

// TestBindMounts: a host directory and a host file bind-mounted into a
// container (ctr run --mount) reach the guest (the shim bind-mounts them
// under the guest root, as virtio-fs shares them with a real guest), read-only
// where asked, and nothing is left mounted afterwards.
func TestBindMounts(t *testing.T) {
	s := newSuite(t)
	t.Cleanup(func() { s.assertClean(t) })
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "in-dir"), []byte("from-host-dir\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "single")
	if err := os.WriteFile(file, []byte("from-host-file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := ctrd.CtxFor(t, 90*time.Second)
	out, err := s.d.Ctr(ctx, s.runArgs("--rm",
		"--mount", "type=bind,src="+host+",dst=/data,options=rbind:rw",
		"--mount", "type=bind,src="+file+",dst=/etc/single,options=bind:ro",
		s.img, "bind1", "sh", "-c", "cat /data/in-dir /etc/single; echo written > /data/new; echo x > /etc/single || echo ro-refused")...)
	if err != nil {
		t.Fatalf("ctr run: %v\n%s", err, out)
	}
	for _, want := range []string{"from-host-dir", "from-host-file", "ro-refused"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if b, err := os.ReadFile(filepath.Join(host, "new")); err != nil || string(b) != "written\n" {
		t.Errorf("what the container wrote in the bind-mounted directory: %q %v", b, err)
	}
	if b, _ := os.ReadFile(file); string(b) != "from-host-file\n" {
		t.Errorf("the read-only file was changed: %q", b)
	}
}
