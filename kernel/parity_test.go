package kernel

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The net kernel is lean plus netfilter, never less (DESIGN.md, kernel
// variants). These tests read the two blobs `make deps` provisions into
// $BOXLITE_DEPS (default /var/cache/boxlite-deps): lean, the stock libkrunfw
// kernel, has no embedded config, so its capabilities come from its kallsyms
// table; net's come from its embedded config (IKCONFIG). They fail, not
// skip, when a blob is missing: the comparison is the point.

// parityExclusions are lean capabilities the net kernel leaves out, and why.
var parityExclusions = map[string]string{
	"tsi": "Transparent Socket Impersonation is a libkrunfw kernel patch (net/tsi); Debian's linux " +
		"source, which net is built from, does not carry it. Without it libkrun's TSI networking " +
		"is unavailable: net guests use virtio-net (passt/TAP) instead",
	"virtio-gpu": "GPU device: a container sandbox has no display; libkrun adds it only when asked (krun_set_gpu_options)",
	"virtio-snd": "sound device: a container sandbox has no audio; libkrun adds it only when asked (krun_set_snd_device)",
	"selinux": "SELinux needs a policy loaded by the guest's init; libkrun's init.krun loads none, so in lean it " +
		"is built in but never enforcing; the LSM hooks themselves (lsm, lsm-network, audit) are kept",
	"kvm-host": "KVM host support runs VMs inside the guest (nested virtualisation); a container sandbox does not",
}

// leanLacks are catalog capabilities the stock libkrunfw kernel is built
// without; net has them anyway. The test checks lean's image still lacks
// them (so the marker is proven not to find what is not there, and a new
// lean that gains one is noticed).
var leanLacks = map[string]string{
	"hardened-usercopy": "libkrunfw 5.5's config-libkrunfw_x86_64 leaves CONFIG_HARDENED_USERCOPY unset, " +
		"and its image has no mm/usercopy.c",
}

// leanNRCPUs is NR_CPUS of the stock libkrunfw 5.5 kernel (its published
// config-libkrunfw_x86_64); the image carries no trace of it, so it is a
// recorded fact, and net must allow at least as many vCPUs.
const leanNRCPUs = 16

// depsBlob reads variant n's blob from the deps cache. Where it is not there
// the test skips (`go test ./...` works with no blob: DESIGN.md), unless
// BOXLITE_REQUIRE_BLOBS is set — `make test` sets it, after `make deps`, so
// there a missing blob fails the test.
func depsBlob(t *testing.T, n Name) (path string, data []byte) {
	t.Helper()
	deps := os.Getenv("BOXLITE_DEPS")
	if deps == "" {
		deps = "/var/cache/boxlite-deps"
	}
	path = filepath.Join(deps, "kernels", string(n), SOName)
	data, err := os.ReadFile(path)
	if err != nil {
		if os.Getenv("BOXLITE_REQUIRE_BLOBS") == "" {
			t.Skipf("the %s kernel blob is not provisioned: %v (run `make deps`, or set BOXLITE_DEPS)", n, err)
		}
		t.Fatalf("the %s kernel blob is needed to compare the variants: %v (run `make deps`, or set BOXLITE_DEPS)", n, err)
	}
	return path, data
}

// netEvidence is what the net blob says twice: its embedded config and its
// kallsyms table.
type netEvidence struct {
	config  map[string]string
	fromCfg Capabilities
	fromSym Capabilities
}

func readNet(t *testing.T) netEvidence {
	t.Helper()
	path, data := depsBlob(t, Net)
	cfg, ok := findIKConfig(data)
	if !ok {
		t.Fatalf("%s has no embedded config (the net kernel is built with CONFIG_IKCONFIG)", path)
	}
	syms, ok := readKallsyms(data)
	if !ok {
		t.Fatalf("%s has no kallsyms table (the net kernel is built with CONFIG_KALLSYMS)", path)
	}
	v := bannerVersion(data)
	return netEvidence{config: cfg, fromCfg: capabilitiesFromConfig(cfg, v), fromSym: capabilitiesFromSymbols(syms, v)}
}

func readLean(t *testing.T) Capabilities {
	t.Helper()
	path, data := depsBlob(t, Lean)
	lean := inspectCapabilities(data)
	if lean.Method != MethodKallsyms {
		t.Fatalf("%s: capabilities read from %q, want %q (stock libkrunfw has no embedded config; "+
			"if it has one now, compare configs instead)", path, lean.Method, MethodKallsyms)
	}
	if !markersVerifiedFor(lean.Version) {
		t.Fatalf("%s: kernel %q is not one the markers were checked against (6.12): re-check them", path, lean.Version)
	}
	return lean
}

func TestLeanNetParity(t *testing.T) {
	lean := readLean(t)
	net := readNet(t)
	for _, c := range CapabilityCatalog() {
		t.Run(c.Name, func(t *testing.T) {
			l, fromCfg, fromSym := lean.State(c.Name), net.fromCfg.State(c.Name), net.fromSym.State(c.Name)
			t.Logf("%s (%s; marker %s): lean %v, net %v", c.Name, strings.Join(c.Options, " "), markers(c), l, fromCfg)
			if len(c.Symbols) == 0 {
				// No image evidence exists; the fact about lean is libkrunfw's
				// published config. net must have it.
				if l != Unknown {
					t.Errorf("lean says %v for a capability without symbols", l)
				}
				if fromCfg != Yes {
					t.Errorf("net's config lacks %s, which stock libkrunfw sets", strings.Join(c.Options, ", "))
				}
				return
			}
			// The marker, checked where the truth is known: net's config.
			if fromSym != fromCfg {
				t.Errorf("marker %s says %v in net, but net's config says %v: the marker does not stand for %s",
					markers(c), fromSym, fromCfg, strings.Join(c.Options, ", "))
			}
			// The marker must find the feature in lean (or prove it absent).
			if why, ok := leanLacks[c.Name]; ok {
				if l != No {
					t.Errorf("lean now says %v; drop it from leanLacks (%s)", l, why)
				}
			} else if l != Yes {
				t.Errorf("marker %s finds nothing in lean: choose a marker lean has, or list in leanLacks why lean lacks %s",
					markers(c), c.Name)
			}
			if why, ok := parityExclusions[c.Name]; ok {
				if fromCfg == Yes {
					t.Errorf("net has %s now: drop its exclusion (%s)", c.Name, why)
				}
				t.Logf("left out of net: %s", why)
				return
			}
			switch _, lacks := leanLacks[c.Name]; {
			case fromCfg == Yes:
			case lacks:
				t.Errorf("net's config lacks %s: lean lacks it too, but net keeps it (deploy/kernel/lean-parity.config)",
					strings.Join(c.Options, ", "))
			default:
				t.Errorf("lean has %s (%s) but net's config lacks %s: add it to deploy/kernel/*.config, "+
					"or exclude it here with the reason", c.Name, markers(c), strings.Join(c.Options, ", "))
			}
		})
	}
	for name := range parityExclusions {
		if !inCatalog(name) {
			t.Errorf("parityExclusions names %s, which the catalog lacks", name)
		}
	}
	for name := range leanLacks {
		if !inCatalog(name) {
			t.Errorf("leanLacks names %s, which the catalog lacks", name)
		}
	}
}

// markers names a capability's symbols for messages.
func markers(c Capability) string {
	s := make([]string, len(c.Symbols))
	for i, sym := range c.Symbols {
		s[i] = sym.Name
		if sym.Global {
			s[i] += " (global)"
		}
	}
	return strings.Join(s, ", ")
}

func inCatalog(name string) bool {
	for _, c := range capabilityCatalog {
		if c.Name == name {
			return true
		}
	}
	return false
}

// TestNetMitigations: besides the mitigations the catalog can see in lean's
// image, libkrunfw turns on every CPU mitigation whose only effect is a
// default mode in arch/x86/kernel/cpu/bugs.c (nothing of them shows in an
// image). net turns on every CPU mitigation its source offers.
func TestNetMitigations(t *testing.T) {
	net := readNet(t)
	if net.config["CONFIG_CPU_MITIGATIONS"] != "y" {
		t.Errorf("CONFIG_CPU_MITIGATIONS=%q, want y", net.config["CONFIG_CPU_MITIGATIONS"])
	}
	var on, off []string
	for opt, val := range net.config {
		if !strings.HasPrefix(opt, "CONFIG_MITIGATION_") {
			continue
		}
		if val == "y" {
			on = append(on, opt)
		} else {
			off = append(off, opt+"="+val)
		}
	}
	sort.Strings(off)
	t.Logf("net: %d mitigations on", len(on))
	if len(off) > 0 {
		t.Errorf("net turns off %s: add them to deploy/kernel/lean-parity.config", strings.Join(off, ", "))
	}
	// The ones with no image evidence, by name, so that a renamed option is noticed.
	for _, opt := range []string{"IBPB_ENTRY", "IBRS_ENTRY", "GDS", "RFDS", "SPECTRE_BHI", "MDS", "TAA",
		"MMIO_STALE_DATA", "L1TF", "RETBLEED", "SPECTRE_V1", "SPECTRE_V2", "SRBDS", "SSB", "TSA"} {
		if net.config["CONFIG_MITIGATION_"+opt] != "y" {
			t.Errorf("net lacks CONFIG_MITIGATION_%s", opt)
		}
	}
}

func TestNetNRCPUs(t *testing.T) {
	net := readNet(t)
	n, err := strconv.Atoi(net.config["CONFIG_NR_CPUS"])
	if err != nil {
		t.Fatalf("CONFIG_NR_CPUS=%q: %v", net.config["CONFIG_NR_CPUS"], err)
	}
	if n < leanNRCPUs {
		t.Errorf("net's NR_CPUS is %d, below lean's %d: a sandbox with more vCPUs would boot with fewer", n, leanNRCPUs)
	}
}
