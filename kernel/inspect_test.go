package kernel

import (
	"bytes"
	"compress/gzip"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
)

func randomBytes(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func writeTemp(t testing.TB, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "libkrunfw.so.5")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func ikconfigBlob(t testing.TB, config string) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteString("IKCFG_ST")
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte(config))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	buf.WriteString("IKCFG_ED")
	return buf.Bytes()
}

func join(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestTristateString(t *testing.T) {
	for ts, want := range map[Tristate]string{Unknown: "unknown", Yes: "yes", No: "no", Tristate(9): "unknown"} {
		if got := ts.String(); got != want {
			t.Errorf("Tristate(%d).String() = %q, want %q", int(ts), got, want)
		}
	}
}

func TestInspectIKConfig(t *testing.T) {
	config := `#
# Automatically generated file; DO NOT EDIT.
#
CONFIG_NF_TABLES=y
CONFIG_BRIDGE=m
# CONFIG_IP_NF_IPTABLES is not set
CONFIG_IP_NF_IPTABLES_LEGACY=y
CONFIG_LOCALVERSION="-x"
`
	data := join(
		randomBytes(1, 4096),
		[]byte("IKCFG_ST not gzip here"), // a stray marker must not stop the search
		randomBytes(2, 1000),
		[]byte("\x00Linux version 6.12.107-boxlite-net (root@h) (gcc) #1 SMP\x00"),
		// strings that would say otherwise: the config wins
		[]byte("iptables: counters copy to user failed while replacing table\n"),
		ikconfigBlob(t, config),
		randomBytes(3, 5000),
	)
	got, err := Inspect(writeTemp(t, data))
	if err != nil {
		t.Fatal(err)
	}
	want := Features{IPTables: No, NFTables: Yes, Bridge: Yes, NetNS: No,
		Version: "6.12.107-boxlite-net", Method: MethodIKConfig, TSI: No}
	if got != want {
		t.Errorf("Inspect = %+v\nwant      %+v", got, want)
	}
}

func TestInspectCorruptIKConfigFallsBackToStrings(t *testing.T) {
	blob := ikconfigBlob(t, "CONFIG_IP_NF_IPTABLES=y\n")
	blob[len(blob)-12] ^= 0xff // break the CRC
	data := join(blob, []byte("\x00Linux version 6.12.91 (root@libkrunfw) #1\x00\x00nf_tables\x00"))
	got, err := Inspect(writeTemp(t, data))
	if err != nil {
		t.Fatal(err)
	}
	if got.Method != MethodStrings || got.NFTables != Yes || got.IPTables != No {
		t.Errorf("Inspect = %+v, want image strings with nf_tables yes, iptables no", got)
	}
}

func TestInspectStrings(t *testing.T) {
	banner := []byte("\x00Linux version 6.12.91 (root@libkrunfw) (gcc 15) #1 SMP PREEMPT_DYNAMIC\x00")
	lean := join(randomBytes(4, 3000), banner,
		[]byte("\x00nf_tables\x00"), randomBytes(5, 100),
		[]byte("\x00net_bridge_fdb_entry\x00"), []byte("\x00net_namespace\x00"),
		[]byte("max_net_namespaces\x00"), randomBytes(6, 100))
	net := join(lean, []byte("\x014ip_tables: iptables: counters copy to user failed while replacing table\n\x00"))
	// ip6tables' and ebtables' warnings must not count as ip_tables.
	notIPv4 := join(lean, []byte("ip6_tables: ip6tables: counters copy to user failed while replacing table\n"),
		[]byte("ebtables: counters copy to user failed while replacing table\n"))
	// Same markers, but a kernel version whose sources were not checked:
	// a missing marker is Unknown, a present one still Yes.
	other := bytes.Replace(lean, []byte("6.12.91"), []byte("6.6.30"), 1)
	// A bare "net_namespace" inside a longer string is not the slab cache name.
	noNS := join(banner, []byte("\x00max_net_namespaces\x00"))

	for name, tc := range map[string]struct {
		data []byte
		want Features
	}{
		"lean":     {lean, Features{IPTables: No, NFTables: Yes, Bridge: Yes, NetNS: Yes, Version: "6.12.91", Method: MethodStrings, TSI: No}},
		"net":      {net, Features{IPTables: Yes, NFTables: Yes, Bridge: Yes, NetNS: Yes, Version: "6.12.91", Method: MethodStrings, TSI: No}},
		"ip6 only": {notIPv4, Features{IPTables: No, NFTables: Yes, Bridge: Yes, NetNS: Yes, Version: "6.12.91", Method: MethodStrings, TSI: No}},
		"other version": {other, Features{IPTables: Unknown, NFTables: Yes, Bridge: Yes, NetNS: Yes,
			Version: "6.6.30", Method: MethodStrings, TSI: No}},
		"bare banner": {noNS, Features{IPTables: No, NFTables: No, Bridge: No, NetNS: No, Version: "6.12.91", Method: MethodStrings, TSI: No}},
		"marker, no banner": {join(randomBytes(7, 100), []byte("\x00nf_tables\x00")),
			Features{NFTables: Yes, Method: MethodStrings}},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := Inspect(writeTemp(t, tc.data))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("Inspect = %+v\nwant      %+v", got, tc.want)
			}
		})
	}
}

// The TSI patch is told by its boot parameter's name, NUL-delimited, in a
// readable image; NR_CPUS comes from the embedded config, else (a libkrunfw
// kernel: it has the TSI patch) from libkrunfw's known config.
func TestInspectTSIAndCPUs(t *testing.T) {
	banner := []byte("\x00Linux version 6.12.91 (root@libkrunfw) #1 SMP\x00")
	param := []byte("\x00tsi_hijack_unix\x00tsi_hijack\x00")
	for name, tc := range map[string]struct {
		data       []byte
		tsi        Tristate
		nrCPUs     int
		nrCPUsFrom string
	}{
		"libkrunfw":            {join(randomBytes(1, 500), banner, param), Yes, 16, NRCPUsFromLibkrunfw},
		"only tsi_hijack_unix": {join(banner, []byte("\x00tsi_hijack_unix\x00")), No, 0, ""},
		"in a longer string":   {join(banner, []byte("\x00no_tsi_hijack\x00tsi_hijacked\x00")), No, 0, ""},
		"no patch, banner":     {join(randomBytes(2, 500), banner), No, 0, ""},
		"config": {join(banner, ikconfigBlob(t, "CONFIG_NR_CPUS=64\nCONFIG_NET_NS=y\n")),
			No, 64, NRCPUsFromIKConfig},
		"config and patch": {join(param, ikconfigBlob(t, "CONFIG_NR_CPUS=8\n")), Yes, 8, NRCPUsFromIKConfig},
		"unreadable":       {randomBytes(3, 500), Unknown, 0, ""},
		"patch, no banner": {join(randomBytes(4, 500), param), Yes, 16, NRCPUsFromLibkrunfw},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := Inspect(writeTemp(t, tc.data))
			if err != nil {
				t.Fatal(err)
			}
			if got.TSI != tc.tsi || got.NRCPUs != tc.nrCPUs || got.NRCPUsFrom != tc.nrCPUsFrom {
				t.Errorf("TSI=%v NRCPUs=%d (%q), want TSI=%v NRCPUs=%d (%q)", got.TSI, got.NRCPUs, got.NRCPUsFrom, tc.tsi, tc.nrCPUs, tc.nrCPUsFrom)
			}
		})
	}
}

func TestInspectNothing(t *testing.T) {
	for name, data := range map[string][]byte{
		"random": randomBytes(8, 1<<16),
		"empty":  nil,
		// A compressed kernel: nothing readable. (Go 1.27's default level
		// stores so short an input as it is: the best level codes it.)
		"gzip": func() []byte {
			var b bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
			zw.Write([]byte("Linux version 6.12.1 \x00nf_tables\x00"))
			zw.Close()
			return b.Bytes()
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			got, err := Inspect(writeTemp(t, data))
			if err != nil {
				t.Fatal(err)
			}
			if want := (Features{Method: MethodUnknown}); got != want {
				t.Errorf("Inspect = %+v, want %+v", got, want)
			}
		})
	}
}

func TestInspectMissingFile(t *testing.T) {
	if _, err := Inspect(filepath.Join(t.TempDir(), "absent.so")); err == nil {
		t.Fatal("Inspect of a missing file returned no error")
	}
}

// TestInspectRealKernels runs over the blobs `make deps` provisions.
func TestInspectRealKernels(t *testing.T) {
	deps := os.Getenv("BOXLITE_DEPS")
	if deps == "" {
		deps = "/var/cache/boxlite-deps"
	}
	for _, tc := range []struct {
		variant  Name
		iptables Tristate
		// The stock libkrunfw kernel has the TSI patch and no embedded
		// config (its NR_CPUS is libkrunfw's known 16); the net kernel has
		// no TSI patch and says CONFIG_NR_CPUS=64 in its config.
		tsi        Tristate
		nrCPUs     int
		nrCPUsFrom string
	}{
		{Lean, No, Yes, 16, NRCPUsFromLibkrunfw},
		{Net, Yes, No, 64, NRCPUsFromIKConfig},
	} {
		t.Run(string(tc.variant), func(t *testing.T) {
			path := filepath.Join(deps, "kernels", string(tc.variant), SOName)
			if _, err := os.Stat(path); err != nil {
				if os.Getenv("BOXLITE_REQUIRE_BLOBS") != "" { // make test: deps ran
					t.Fatalf("%s is missing (run `make deps` to provision it): %v", path, err)
				}
				t.Skipf("%s is missing (run `make deps` to provision it): %v", path, err)
			}
			got, err := Inspect(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %v", tc.variant, got)
			if got.IPTables != tc.iptables || got.NFTables != Yes {
				t.Errorf("%s: IPTables=%v NFTables=%v, want IPTables=%v NFTables=yes", tc.variant, got.IPTables, got.NFTables, tc.iptables)
			}
			if got.Bridge != Yes || got.NetNS != Yes {
				t.Errorf("%s: Bridge=%v NetNS=%v, want both yes", tc.variant, got.Bridge, got.NetNS)
			}
			if got.Version == "" {
				t.Errorf("%s: no kernel version found", tc.variant)
			}
			if got.TSI != tc.tsi || got.NRCPUs != tc.nrCPUs || got.NRCPUsFrom != tc.nrCPUsFrom {
				t.Errorf("%s: TSI=%v NRCPUs=%d (%s), want TSI=%v NRCPUs=%d (%s)", tc.variant, got.TSI, got.NRCPUs, got.NRCPUsFrom, tc.tsi, tc.nrCPUs, tc.nrCPUsFrom)
			}
			if tc.variant == Net && got.Method != MethodIKConfig {
				t.Errorf("net: Method = %q, want %q (the net kernel is built with CONFIG_IKCONFIG)", got.Method, MethodIKConfig)
			}
		})
	}
}

func FuzzInspect(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("IKCFG_ST"))
	f.Add(ikconfigBlob(f, "CONFIG_NF_TABLES=y\n# CONFIG_BRIDGE is not set\n"))
	f.Add([]byte("\x00Linux version 6.12.91 #1\x00\x00nf_tables\x00"))
	f.Add([]byte("Linux version 6."))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "blob")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := Inspect(p)
		if err != nil {
			t.Fatal(err)
		}
		switch got.Method {
		case MethodIKConfig, MethodStrings, MethodUnknown:
		default:
			t.Fatalf("unexpected Method %q", got.Method)
		}
	})
}
