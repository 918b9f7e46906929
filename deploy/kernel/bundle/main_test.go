package main

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

type seg struct {
	typ          elf.ProgType
	paddr, vaddr uint64
	data         []byte
	memsz        uint64
}

// makeELF writes a minimal x86_64 ELF executable with the given segments
// (listed in the given order, which need not be sorted by address).
func makeELF(t *testing.T, entry uint64, segs []seg) string {
	t.Helper()
	const ehsize, phentsize = 64, 56
	var body bytes.Buffer
	off := uint64(ehsize + phentsize*len(segs))
	var phs []elf.Prog64
	for _, s := range segs {
		memsz := s.memsz
		if memsz < uint64(len(s.data)) {
			memsz = uint64(len(s.data))
		}
		phs = append(phs, elf.Prog64{
			Type: uint32(s.typ), Flags: uint32(elf.PF_R | elf.PF_W | elf.PF_X),
			Off: off + uint64(body.Len()), Vaddr: s.vaddr, Paddr: s.paddr,
			Filesz: uint64(len(s.data)), Memsz: memsz, Align: 16,
		})
		body.Write(s.data)
	}
	hdr := elf.Header64{
		Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Entry: entry, Phoff: ehsize, Ehsize: ehsize, Phentsize: phentsize, Phnum: uint16(len(segs)),
		Shentsize: 64,
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	var out bytes.Buffer
	binary.Write(&out, binary.LittleEndian, hdr)
	binary.Write(&out, binary.LittleEndian, phs)
	out.Write(body.Bytes())
	p := filepath.Join(t.TempDir(), "vmlinux")
	if err := os.WriteFile(p, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

// A kernel-like layout: segments out of order, a PT_NOTE, a gap, bss (memsz > filesz).
func testSegments() (entry uint64, segs []seg, want []byte) {
	text := pattern(0x1234, 1)
	data := pattern(0x100, 99)
	segs = []seg{
		{typ: elf.PT_LOAD, paddr: 0x1003000, vaddr: 0xffffffff81003000, data: data, memsz: 0x5000},
		{typ: elf.PT_NOTE, paddr: 0x1000100, vaddr: 0xffffffff81000100, data: pattern(0x20, 5)},
		{typ: elf.PT_LOAD, paddr: 0x1000000, vaddr: 0xffffffff81000000, data: text},
	}
	want = make([]byte, DefaultAlign)
	copy(want, text)
	copy(want[0x3000:], data)
	return 0x1000123, segs, want
}

func TestFlatten(t *testing.T) {
	entry, segs, want := testSegments()
	f, err := elf.Open(makeELF(t, entry, segs))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := Flatten(f, DefaultAlign)
	if err != nil {
		t.Fatal(err)
	}
	if img.LoadAddr != 0x1000000 || img.EntryAddr != 0x1000123 {
		t.Errorf("load=%#x entry=%#x, want 0x1000000 0x1000123", img.LoadAddr, img.EntryAddr)
	}
	if !bytes.Equal(img.Data, want) {
		t.Errorf("flattened image differs (len %d, want %d)", len(img.Data), len(want))
	}
}

func TestFlattenRejects(t *testing.T) {
	for name, tc := range map[string]struct {
		entry uint64
		segs  []seg
		want  string
	}{
		"overlap": {0x1000000, []seg{
			{typ: elf.PT_LOAD, paddr: 0x1000000, data: pattern(0x2000, 1)},
			{typ: elf.PT_LOAD, paddr: 0x1001000, data: pattern(0x10, 1)},
		}, "overlaps"},
		"virtual entry": {0xffffffff81000000, []seg{
			{typ: elf.PT_LOAD, paddr: 0x1000000, data: pattern(0x10, 1)},
		}, "outside the loaded image"},
		"no load": {0x1000000, []seg{
			{typ: elf.PT_NOTE, paddr: 0x1000000, data: pattern(0x10, 1)},
		}, "no PT_LOAD"},
	} {
		t.Run(name, func(t *testing.T) {
			f, err := elf.Open(makeELF(t, tc.entry, tc.segs))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := Flatten(f, DefaultAlign); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Flatten error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestBuildLoads builds a bundle with cc and loads it with krunfw-probe (the
// same dlopen + krunfw_get_kernel/krunfw_get_version calls libkrun makes).
// Skips only when no C compiler is installed.
func TestBuildLoads(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler (cc) on PATH: cannot build or load a bundle")
	}
	dir := t.TempDir()
	probe := filepath.Join(dir, "krunfw-probe")
	if out, err := exec.Command(cc, "-O2", "-o", probe, "../krunfw-probe.c", "-ldl").CombinedOutput(); err != nil {
		t.Fatalf("building krunfw-probe: %v\n%s", err, out)
	}

	entry, segs, want := testSegments()
	f, err := elf.Open(makeELF(t, entry, segs))
	if err != nil {
		t.Fatal(err)
	}
	img, err := Flatten(f, DefaultAlign)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	lib := filepath.Join(dir, Soname)
	if err := Build(img, 5, DefaultAlign, cc, lib); err != nil {
		t.Fatal(err)
	}

	so, err := elf.Open(lib)
	if err != nil {
		t.Fatal(err)
	}
	sonames, _ := so.DynString(elf.DT_SONAME)
	syms, _ := so.DynamicSymbols()
	so.Close()
	if len(sonames) != 1 || sonames[0] != Soname {
		t.Errorf("DT_SONAME = %v, want %s", sonames, Soname)
	}
	exported := map[string]bool{}
	for _, s := range syms {
		if s.Section != elf.SHN_UNDEF {
			exported[s.Name] = true
		}
	}
	for _, name := range []string{"KERNEL_BUNDLE", "krunfw_get_kernel", "krunfw_get_version"} {
		if !exported[name] {
			t.Errorf("%s is not exported", name)
		}
	}

	dump := filepath.Join(dir, "dump")
	out, err := exec.Command(probe, lib, dump).CombinedOutput()
	if err != nil {
		t.Fatalf("krunfw-probe: %v\n%s", err, out)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		got[k] = v
	}
	for k, v := range map[string]string{
		"version": "5", "load_addr": "0x1000000", "entry_addr": "0x1000123",
		"size": strconv.Itoa(len(want)),
	} {
		if got[k] != v {
			t.Errorf("probe %s = %q, want %q (output: %s)", k, got[k], v, out)
		}
	}
	if a, _ := strconv.Atoi(got["align"]); a < 4096 {
		t.Errorf("KERNEL_BUNDLE is aligned to %s bytes, want at least a page", got["align"])
	}
	b, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want) {
		t.Errorf("bundle bytes differ from the flattened image")
	}
}
