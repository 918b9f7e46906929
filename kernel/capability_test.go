package kernel

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

func TestCapabilityCatalog(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range CapabilityCatalog() {
		if c.Name == "" || c.Group == "" || len(c.Options) == 0 {
			t.Errorf("%+v: a capability needs a name, a group and its options", c)
		}
		if seen[c.Name] {
			t.Errorf("%s: listed twice", c.Name)
		}
		seen[c.Name] = true
		for _, o := range c.Options {
			if !strings.HasPrefix(o, "CONFIG_") {
				t.Errorf("%s: option %q lacks the CONFIG_ prefix", c.Name, o)
			}
		}
		for _, s := range c.Symbols {
			if s.Name == "" || strings.ContainsAny(s.Name, ". \x00") {
				t.Errorf("%s: symbol %q is not a bare kallsyms name", c.Name, s.Name)
			}
		}
	}
	for _, n := range HardeningNames() {
		if !seen[n] {
			t.Errorf("HardeningNames lists %s, which the catalog lacks", n)
		}
	}
	// The catalog is returned as a copy.
	CapabilityCatalog()[0].Name = "changed"
	if CapabilityCatalog()[0].Name == "changed" {
		t.Error("CapabilityCatalog returns the catalog itself")
	}
}

func TestInspectCapabilitiesIKConfig(t *testing.T) {
	config := "CONFIG_MITIGATION_PAGE_TABLE_ISOLATION=y\n" +
		"# CONFIG_MITIGATION_RETPOLINE is not set\n" +
		"CONFIG_VMAP_STACK=y\nCONFIG_SLAB_FREELIST_HARDENED=y\nCONFIG_NF_TABLES=m\n"
	// Symbols that would say otherwise: the config wins.
	data := join(randomBytes(21, 2000),
		[]byte("\x00Linux version 6.12.107-boxlite-net (root@h) #1 SMP\x00"),
		kallsymsTable(t, []string{"T__x86_indirect_thunk_array", "Tnot_vmap"}),
		ikconfigBlob(t, config), randomBytes(22, 100))
	got, err := InspectCapabilities(writeTemp(t, data))
	if err != nil {
		t.Fatal(err)
	}
	if got.Method != MethodIKConfig || got.Version != "6.12.107-boxlite-net" {
		t.Errorf("Method %q Version %q, want %q 6.12.107-boxlite-net", got.Method, got.Version, MethodIKConfig)
	}
	for name, want := range map[string]Tristate{
		"pti": Yes, "retpoline": No, "vmap-stack": Yes,
		"slab-freelist-hardened": Yes, // no symbol, but the config says
		"nf-tables":              Yes, // m counts
		"fortify-source":         No,  // absent from the config
		"no-such-capability":     Unknown,
	} {
		if s := got.State(name); s != want {
			t.Errorf("%s = %v, want %v", name, s, want)
		}
	}
}

func TestInspectCapabilitiesKallsyms(t *testing.T) {
	names := []string{
		"Tpti_init",
		"t__x86_indirect_thunk_array", // a local copy: retpoline wants the global one
		"T__fortify_report",
		"W__x64_sys_userfaultfd", // COND_SYSCALL's weak alias: no userfaultfd
		"T__x64_sys_process_vm_readv",
		"tchildren_seq_open.isra.0", // suffixes are not part of the name
		"tunrelated",
	}
	table := kallsymsTable(t, names)
	banner := func(v string) []byte { return []byte("\x00Linux version " + v + " (root@libkrunfw) #1 SMP\x00") }

	for _, tc := range []struct {
		name    string
		data    []byte
		version string
		method  string
		want    map[string]Tristate
	}{
		{"6.12", join(randomBytes(23, 5000), banner("6.12.91"), table, randomBytes(24, 64)), "6.12.91", MethodKallsyms,
			map[string]Tristate{
				"pti": Yes, "retpoline": No, "fortify-source": Yes, "userfaultfd": No,
				"cross-memory-attach": Yes, "proc-children": Yes, "vmap-stack": No,
				"slab-freelist-hardened": Unknown, // no symbol to look for
			}},
		// Sources not checked for this release: absence proves nothing.
		{"other release", join(banner("6.6.30"), table), "6.6.30", MethodKallsyms,
			map[string]Tristate{"pti": Yes, "retpoline": Unknown, "vmap-stack": Unknown, "slab-freelist-hardened": Unknown}},
		{"no banner", join(randomBytes(25, 300), table), "", MethodKallsyms,
			map[string]Tristate{"pti": Yes, "retpoline": Unknown}},
		{"neither", join(banner("6.12.91"), randomBytes(26, 4096)), "6.12.91", MethodUnknown,
			map[string]Tristate{"pti": Unknown, "retpoline": Unknown}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := InspectCapabilities(writeTemp(t, tc.data))
			if err != nil {
				t.Fatal(err)
			}
			if got.Method != tc.method || got.Version != tc.version {
				t.Errorf("Method %q Version %q, want %q %q", got.Method, got.Version, tc.method, tc.version)
			}
			for name, want := range tc.want {
				if s := got.State(name); s != want {
					t.Errorf("%s = %v, want %v", name, s, want)
				}
			}
		})
	}
}

func TestInspectCapabilitiesMissingFile(t *testing.T) {
	if _, err := InspectCapabilities(filepath.Join(t.TempDir(), "absent.so")); err == nil {
		t.Fatal("InspectCapabilities of a missing file returned no error")
	}
}

func FuzzInspectCapabilities(f *testing.F) {
	f.Add([]byte{})
	f.Add(kallsymsTable(f, []string{"Tpti_init", "tlocal"}))
	f.Add(join([]byte("\x00Linux version 6.12.91 #1\x00"), kallsymsTable(f, manyNames(300))))
	f.Add(u16Table())
	f.Fuzz(func(t *testing.T, data []byte) {
		c := inspectCapabilities(data)
		switch c.Method {
		case MethodIKConfig, MethodKallsyms, MethodUnknown:
		default:
			t.Fatalf("unexpected Method %q", c.Method)
		}
		if c.Method == MethodUnknown && !bytes.Contains(data, []byte("Linux version")) && c.Version != "" {
			t.Fatalf("a version %q from no banner", c.Version)
		}
	})
}
