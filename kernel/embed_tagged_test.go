//go:build kernel_lean || kernel_net

package kernel

import (
	"bytes"
	"os"
	"reflect"
	"runtime/debug"
	"strings"
	"testing"
)

// taggedVariants reads the kernel_* build tags this test binary was built
// with; ok is false when the build information does not record them.
func taggedVariants() (names []Name, ok bool) {
	bi, found := debug.ReadBuildInfo()
	if !found {
		return nil, false
	}
	for _, s := range bi.Settings {
		if s.Key != "-tags" {
			continue
		}
		tags := map[string]bool{}
		for _, tag := range strings.Split(s.Value, ",") {
			tags[strings.TrimSpace(tag)] = true
		}
		for _, n := range Names() {
			if tags["kernel_"+string(n)] {
				names = append(names, n)
			}
		}
		return names, true
	}
	return nil, false
}

func TestEmbeddedMatchesBuildTags(t *testing.T) {
	got := Embedded()
	if len(got) == 0 {
		t.Fatal("a kernel_* tagged build embeds nothing")
	}
	want, ok := taggedVariants()
	if !ok {
		t.Skipf("build information records no -tags; Embedded() = %v", got)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Embedded() = %v, but the build tags select %v", got, want)
	}
}

func TestExtractEmbeddedVariants(t *testing.T) {
	cache := t.TempDir()
	for _, n := range Embedded() {
		t.Run(string(n), func(t *testing.T) {
			sum, ok := EmbeddedSHA256(n)
			if !ok {
				t.Fatalf("EmbeddedSHA256(%s) finds no blob", n)
			}
			path, err := Extract(n, cache)
			if err != nil {
				t.Fatal(err)
			}
			if path != cachePath(cache, sum) {
				t.Errorf("Extract(%s) = %s, want %s", n, path, cachePath(cache, sum))
			}
			content, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := sha256Hex(content); got != sum {
				t.Errorf("extracted %s has sha256 %s, the binary records %s", n, got, sum)
			}
			if !bytes.HasPrefix(content, []byte("\x7fELF")) {
				t.Logf("note: extracted %s is not an ELF file (a test blob?)", n)
			}
			src, err := Locate(n, Policy{Default: n, Allowed: []Name{n}}, cache)
			if err != nil || !src.Embedded || src.Path != path || src.SHA256 != sum {
				t.Errorf("Locate(%s) = %+v, %v; want the extracted blob", n, src, err)
			}
		})
	}
}
