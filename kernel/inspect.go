package kernel

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// Tristate is an answer that may be unknown.
type Tristate int

const (
	// Unknown means the image does not say.
	Unknown Tristate = iota
	// Yes means the feature is built in (or, from a config, built as a module).
	Yes
	// No means the feature is absent.
	No
)

func (t Tristate) String() string {
	switch t {
	case Yes:
		return "yes"
	case No:
		return "no"
	default:
		return "unknown"
	}
}

// Methods Inspect reports in Features.Method.
const (
	MethodIKConfig = "embedded config (IKCONFIG)"
	MethodStrings  = "image strings"
	MethodUnknown  = "unknown"
)

// Features is what a kernel library tells about the guest kernel inside it.
type Features struct {
	IPTables Tristate // CONFIG_IP_NF_IPTABLES (legacy iptables)
	NFTables Tristate // CONFIG_NF_TABLES
	Bridge   Tristate // CONFIG_BRIDGE
	NetNS    Tristate // CONFIG_NET_NS
	Version  string   // kernel release from the "Linux version" banner, "" if not found
	Method   string   // MethodIKConfig, MethodStrings or MethodUnknown
	// TSI says whether the kernel has libkrunfw's TSI patch, which makes
	// "tsi_hijack" (the word libkrun adds to the command line when TSI is
	// on) a kernel parameter. A kernel without it passes the word on to
	// init's argv, so such a kernel must never be booted with TSI. See
	// tsiMarker.
	TSI Tristate
	// NRCPUs is the most CPUs the kernel brings up (CONFIG_NR_CPUS; a VM
	// with more vCPUs runs the rest idle), 0 if unknown; NRCPUsFrom says
	// where the number comes from.
	NRCPUs     int
	NRCPUsFrom string
}

// Where Features.NRCPUs comes from.
const (
	NRCPUsFromIKConfig  = "CONFIG_NR_CPUS in the embedded config"
	NRCPUsFromLibkrunfw = "libkrunfw's x86_64 config (CONFIG_NR_CPUS=16 in every 5.x release; the image carries no config)"
)

// libkrunfwNRCPUs is CONFIG_NR_CPUS of libkrunfw's x86_64 kernel
// (config-libkrunfw_x86_64, every 5.x tag). It is used for a libkrunfw
// kernel without an embedded config, which the TSI patch identifies: only
// libkrunfw carries it.
const libkrunfwNRCPUs = 16

func (f Features) String() string {
	v := f.Version
	if v == "" {
		v = "unknown version"
	}
	cpus := "unknown"
	if f.NRCPUs > 0 {
		cpus = strconv.Itoa(f.NRCPUs)
	}
	return fmt.Sprintf("Linux %s: iptables=%s nftables=%s bridge=%s netns=%s tsi=%s nr_cpus=%s (from %s)",
		v, f.IPTables, f.NFTables, f.Bridge, f.NetNS, f.TSI, cpus, f.Method)
}

// Inspect reads a libkrunfw-ABI library (or a raw kernel image) and reports
// which network features its guest kernel has.
//
// It prefers the kernel's embedded configuration (CONFIG_IKCONFIG: a gzip
// stream between the markers "IKCFG_ST" and "IKCFG_ED"). Without one it falls
// back to string literals that only the feature's own code carries; this
// works because libkrunfw bundles the kernel uncompressed. A marker that is
// present means Yes. A missing marker means No only where the image's kernel
// version is one whose sources were checked for that marker (see
// stringMarkers); otherwise the answer is Unknown, never a guess. An image
// with neither a config nor any recognisable string is reported with Method
// "unknown" and every feature Unknown.
//
// Errors are returned only for I/O failures; unrecognisable content is not an
// error.
func Inspect(path string) (Features, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Features{}, err
	}
	return inspectBytes(data), nil
}

func inspectBytes(data []byte) Features {
	f := Features{Version: bannerVersion(data)}
	cfg, hasConfig := findIKConfig(data)
	f.TSI = tsiPatch(data, hasConfig || f.Version != "")
	if hasConfig {
		f.Method = MethodIKConfig
		f.IPTables = configTristate(cfg, "CONFIG_IP_NF_IPTABLES")
		f.NFTables = configTristate(cfg, "CONFIG_NF_TABLES")
		f.Bridge = configTristate(cfg, "CONFIG_BRIDGE")
		f.NetNS = configTristate(cfg, "CONFIG_NET_NS")
		if n, err := strconv.Atoi(cfg["CONFIG_NR_CPUS"]); err == nil && n > 0 {
			f.NRCPUs, f.NRCPUsFrom = n, NRCPUsFromIKConfig
		}
		return f
	}
	if f.TSI == Yes {
		f.NRCPUs, f.NRCPUsFrom = libkrunfwNRCPUs, NRCPUsFromLibkrunfw
	}

	found := false
	absentMeansNo := f.Version != "" && markersVerifiedFor(f.Version)
	for _, m := range stringMarkers {
		state := Unknown
		if m.present(data) {
			state, found = Yes, true
		} else if absentMeansNo {
			state = No
		}
		*m.field(&f) = state
	}
	switch {
	case found || f.Version != "":
		f.Method = MethodStrings
	default:
		f.Method = MethodUnknown
	}
	return f
}

// --- embedded config -----------------------------------------------------------

var ikcfgStart = []byte("IKCFG_ST")

// maxIKConfig bounds the decompressed config (a full distribution config is
// about 300 KiB).
const maxIKConfig = 16 << 20

// findIKConfig returns the parsed CONFIG_ lines of the first IKCONFIG blob in
// data that decompresses.
func findIKConfig(data []byte) (map[string]string, bool) {
	for off := 0; ; {
		i := bytes.Index(data[off:], ikcfgStart)
		if i < 0 {
			return nil, false
		}
		start := off + i + len(ikcfgStart)
		off = start
		// One gzip member follows the start marker (and "IKCFG_ED" follows
		// it); the reader stops at the member's end and checks its CRC.
		zr, err := gzip.NewReader(bytes.NewReader(data[start:]))
		if err != nil {
			continue
		}
		zr.Multistream(false)
		text, err := io.ReadAll(io.LimitReader(zr, maxIKConfig+1))
		if err != nil || len(text) > maxIKConfig {
			continue
		}
		return parseKconfig(text), true
	}
}

// parseKconfig maps each set option to its value; "# CONFIG_X is not set"
// lines map to "n".
func parseKconfig(text []byte) map[string]string {
	cfg := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "# "); ok {
			if name, ok := strings.CutSuffix(rest, " is not set"); ok && strings.HasPrefix(name, "CONFIG_") {
				cfg[name] = "n"
			}
			continue
		}
		if name, val, ok := strings.Cut(line, "="); ok && strings.HasPrefix(name, "CONFIG_") {
			cfg[name] = val
		}
	}
	return cfg
}

// configTristate: y or m → Yes; anything else (absent, "is not set") → No.
func configTristate(cfg map[string]string, name string) Tristate {
	switch cfg[name] {
	case "y", "m":
		return Yes
	default:
		return No
	}
}

// --- TSI --------------------------------------------------------------------------

// tsiMarker is the name of the boot parameter libkrunfw's TSI patch
// declares (patch "tsi: allow hijacking sockets (tsi_hijack)":
// core_param(tsi_hijack, tsi_hijack, bool, 0644)), as it is stored in the
// kernel's read-only data, NUL-delimited: the kernel's table of parameters
// points at it. It is exactly what decides whether the kernel consumes the
// word libkrun appends or hands it to init. Checked on the stock libkrunfw
// 5.5 kernel (present, beside "tsi_hijack_unix") and on the project's net
// kernel (absent).
var tsiMarker = []byte("\x00tsi_hijack\x00")

// tsiPatch: the marker present means Yes; absent means No only where the
// image is readable (an embedded config or the banner was found: the kernel
// is not compressed), else Unknown.
func tsiPatch(data []byte, readable bool) Tristate {
	switch {
	case bytes.Contains(data, tsiMarker):
		return Yes
	case readable:
		return No
	default:
		return Unknown
	}
}

// --- banner and string markers --------------------------------------------------

var bannerRE = regexp.MustCompile(`Linux version ([0-9]+\.[0-9]+(?:\.[0-9]+)?[^\s\x00]*)`)

func bannerVersion(data []byte) string {
	m := bannerRE.FindSubmatch(data)
	if m == nil {
		return ""
	}
	return string(m[1])
}

// stringMarker is a NUL-delimited or substring literal that, in the kernel
// sources checked, exists only in the code a kernel option builds.
type stringMarker struct {
	field func(*Features) *Tristate
	any   [][]byte // any one present → Yes
}

func (m stringMarker) present(data []byte) bool {
	for _, s := range m.any {
		if bytes.Contains(data, s) {
			return true
		}
	}
	return false
}

// stringMarkers were checked against Linux 6.12 (Debian's 6.12.107 sources,
// the stock libkrunfw 6.12.91 kernel, which has nf_tables, bridge and NET_NS but
// not ip_tables, and the project's net kernel, which has all four):
//
//   - ip_tables: the do_replace warning of net/ipv4/netfilter/ip_tables.c.
//     (The old "ip_tables: (C) 2000-2006 Netfilter Core Team" init banner is
//     gone from current kernels, so it is not used.) ip_tables.o is what
//     legacy iptables needs (CONFIG_IP_NF_IPTABLES_LEGACY since 6.9).
//   - nf_tables: the nfnetlink subsystem name in net/netfilter/nf_tables_api.c.
//   - bridge: the name of the bridge's FDB slab cache (net/bridge/br_fdb.c);
//     older kernels call it "bridge_fdb_cache".
//   - NET_NS: the struct net slab cache, created in net/core/net_namespace.c
//     only under CONFIG_NET_NS.
var stringMarkers = []stringMarker{
	{func(f *Features) *Tristate { return &f.IPTables },
		[][]byte{[]byte("iptables: counters copy to user failed while replacing table")}},
	{func(f *Features) *Tristate { return &f.NFTables },
		[][]byte{[]byte("\x00nf_tables\x00")}},
	{func(f *Features) *Tristate { return &f.Bridge },
		[][]byte{[]byte("\x00net_bridge_fdb_entry\x00"), []byte("\x00bridge_fdb_cache\x00")}},
	{func(f *Features) *Tristate { return &f.NetNS },
		[][]byte{[]byte("\x00net_namespace\x00")}},
}

// markersVerifiedFor reports whether the absence of every marker was checked
// to mean the feature is absent for this kernel release: 6.12 only.
func markersVerifiedFor(release string) bool {
	m := releaseRE.FindStringSubmatch(release)
	if m == nil {
		return false
	}
	major, err1 := strconv.Atoi(m[1])
	minor, err2 := strconv.Atoi(m[2])
	return err1 == nil && err2 == nil && major == 6 && minor == 12
}

var releaseRE = regexp.MustCompile(`^([0-9]+)\.([0-9]+)`)
