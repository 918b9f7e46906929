package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestKernelsCommand runs `kernels` on the binary `make test` builds (both
// variants embedded) and reads the ip_tables difference from the real blobs:
// net carries legacy iptables, lean does not; both have nf_tables.
func TestKernelsCommand(t *testing.T) {
	bin := shimBinary(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte("cache_dir = \""+filepath.Join(dir, "cache")+"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "kernels", "-config", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("kernels: %v\n%s", err, out)
	}
	t.Logf("\n%s", out)
	// The first table (variants); the hardening table follows a blank line.
	rows := map[string][]string{}
	first, _, _ := strings.Cut(string(out), "\n\n")
	for _, line := range strings.Split(first, "\n") {
		f := strings.Fields(line)
		if len(f) >= 10 && f[0] != "VARIANT" {
			rows[f[0]] = f
		}
	}
	for _, tc := range []struct {
		variant, iptables string
	}{
		{"lean", "no"},
		{"net", "yes"},
	} {
		r, ok := rows[tc.variant]
		if !ok {
			t.Fatalf("variant %s not listed (is it embedded? `make test` builds KERNELS=\"lean net\")", tc.variant)
		}
		// VARIANT STATE SOURCE SHA256 VERSION IPTABLES NFTABLES BRIDGE NETNS FROM
		if r[2] != "embedded" || len(r[3]) != 16 {
			t.Errorf("%s: source/sha = %s %s", tc.variant, r[2], r[3])
		}
		if r[5] != tc.iptables || r[6] != "yes" {
			t.Errorf("%s: iptables=%s nftables=%s, want iptables=%s nftables=yes", tc.variant, r[5], r[6], tc.iptables)
		}
	}
}
