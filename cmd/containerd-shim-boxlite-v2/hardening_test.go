package main

import (
	"bytes"
	"compress/gzip"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/boxlite/boxlite-shim/kernel"
	"github.com/boxlite/boxlite-shim/runtime/preflight"
)

// blobWithConfig is a stand-in kernel library: some bytes, a kernel banner
// and an embedded config (IKCONFIG) with these lines.
func blobWithConfig(t *testing.T, config string) []byte {
	t.Helper()
	var b bytes.Buffer
	b.Write(randomBytes(1, 1000))
	b.WriteString("\x00Linux version 6.12.107-boxlite-net (root@h) #1 SMP\x00")
	b.WriteString("IKCFG_ST")
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(config))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	b.WriteString("IKCFG_ED")
	return b.Bytes()
}

func randomBytes(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func writeBlob(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrintHardening(t *testing.T) {
	hardened := writeBlob(t, "hardened.so", blobWithConfig(t, strings.Join([]string{
		"CONFIG_MITIGATION_PAGE_TABLE_ISOLATION=y", "CONFIG_MITIGATION_RETPOLINE=y", "CONFIG_VMAP_STACK=y",
		"CONFIG_HARDENED_USERCOPY=y", "CONFIG_FORTIFY_SOURCE=y", "CONFIG_SLAB_FREELIST_HARDENED=y",
		"CONFIG_SECURITY=y", ""}, "\n")))
	soft := writeBlob(t, "soft.so", blobWithConfig(t, "CONFIG_VMAP_STACK=y\n# CONFIG_FORTIFY_SOURCE is not set\n"))
	opaque := writeBlob(t, "opaque.so", randomBytes(2, 4096))
	rows := []preflight.KernelRow{
		{Name: kernel.Lean, Source: kernel.Source{Path: opaque}},
		{Name: kernel.Net, Source: kernel.Source{Path: hardened}},
		{Name: "soft", Source: kernel.Source{Path: soft}},
		{Name: "broken", Err: errors.New("not available")},
		{Name: "vanished", Source: kernel.Source{Path: filepath.Join(t.TempDir(), "gone.so")}},
	}
	var out bytes.Buffer
	printHardening(&out, rows)
	t.Logf("\n%s", out.String())

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	got := map[string][]string{}
	for _, l := range lines {
		f := strings.Fields(l)
		got[f[0]] = f[1:]
	}
	if h := got["VARIANT"]; strings.Join(h, " ") !=
		"PTI RETPOLINE VMAP-STACK HARDENED-USERCOPY FORTIFY-SOURCE SLAB-FREELIST-HARDENED LSM FROM" {
		t.Errorf("header = %v", h)
	}
	for variant, want := range map[string]string{
		// neither a config nor a symbol table: every answer, and the method, unknown
		"lean": "unknown unknown unknown unknown unknown unknown unknown unknown",
		"net":  "yes yes yes yes yes yes yes embedded config (IKCONFIG)",
		"soft": "no no yes no no no no embedded config (IKCONFIG)",
	} {
		if g := strings.Join(got[variant], " "); g != want {
			t.Errorf("%s: %q\nwant     %q", variant, g, want)
		}
	}
	if _, ok := got["broken"]; ok {
		t.Error("a variant that cannot be booted has a hardening row")
	}
	if v := strings.Join(got["vanished"], " "); !strings.HasPrefix(v, "- - - - - - - ") || !strings.Contains(v, "gone.so") {
		t.Errorf("vanished: %q, want dashes and the error", v)
	}
	if !strings.HasPrefix(out.String(), "\n") {
		t.Error("the hardening table is not set apart from the kernels table by an empty line")
	}
}
