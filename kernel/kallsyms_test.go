package kernel

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"testing"
)

// kallsymsTable lays out a kallsyms table for typed names ("T" + name, "t" +
// name...) as Linux 6.12's scripts/kallsyms.c does: kallsyms_num_syms,
// kallsyms_names, kallsyms_markers, kallsyms_token_table,
// kallsyms_token_index, each 8-byte aligned from the start of the result.
// Printable ASCII keeps single-character tokens; the other 161 byte values
// stand for substrings of the names (the longest first, as compression would
// choose them), so decoding must expand multi-character tokens.
func kallsymsTable(t testing.TB, typed []string) []byte {
	t.Helper()
	data, _ := buildKallsyms(t, typed)
	return data
}

// buildKallsyms is kallsymsTable, also saying where kallsyms_markers starts.
func buildKallsyms(t testing.TB, typed []string) (data []byte, markersAt int) {
	t.Helper()
	var tokens [256]string
	for c := 0x21; c <= 0x7e; c++ {
		tokens[c] = string(rune(c))
	}
	free := []int{}
	for c := range 256 {
		if tokens[c] == "" {
			free = append(free, c)
		}
	}
	// Candidate multi-character tokens: substrings of 2..6 bytes of the
	// names under 100 bytes, most frequent first (a longer name is left to
	// single-character tokens, so that it needs a two-byte length).
	count := map[string]int{}
	for _, s := range typed {
		if len(s) >= 100 {
			continue
		}
		for l := 2; l <= 6; l++ {
			for i := 0; i+l <= len(s); i++ {
				count[s[i:i+l]]++
			}
		}
	}
	cands := make([]string, 0, len(count))
	for s := range count {
		cands = append(cands, s)
	}
	sort.Slice(cands, func(i, j int) bool {
		if count[cands[i]] != count[cands[j]] {
			return count[cands[i]] > count[cands[j]]
		}
		return cands[i] < cands[j]
	})
	for i, c := range free {
		if i < len(cands) {
			tokens[c] = cands[i]
		} else {
			tokens[c] = fmt.Sprintf("~unused%d", i) // never matched
		}
	}
	encode := func(s string) []byte {
		var out []byte
		for len(s) > 0 {
			best, bestLen := -1, 0
			for c, tok := range tokens {
				if len(tok) > bestLen && strings.HasPrefix(s, tok) {
					best, bestLen = c, len(tok)
				}
			}
			if best < 0 {
				t.Fatalf("no token for %q", s)
			}
			out = append(out, byte(best))
			s = s[bestLen:]
		}
		return out
	}

	var b bytes.Buffer
	align := func() {
		for b.Len()%8 != 0 {
			b.WriteByte(0)
		}
	}
	le32 := func(v uint32) { binary.Write(&b, binary.LittleEndian, v) }
	le32(uint32(len(typed)))
	align()
	namesAt := b.Len()
	var markers []uint32
	for i, s := range typed {
		if i%256 == 0 {
			markers = append(markers, uint32(b.Len()-namesAt))
		}
		enc := encode(s)
		if len(enc) <= 0x7f {
			b.WriteByte(byte(len(enc)))
		} else {
			b.WriteByte(byte(len(enc)&0x7f | 0x80))
			b.WriteByte(byte(len(enc) >> 7))
		}
		b.Write(enc)
	}
	align()
	markersAt = b.Len()
	for _, m := range markers {
		le32(m)
	}
	align()
	tableAt := b.Len()
	var index [256]uint16
	for c, tok := range tokens {
		index[c] = uint16(b.Len() - tableAt)
		b.WriteString(tok)
		b.WriteByte(0)
	}
	align()
	binary.Write(&b, binary.LittleEndian, index)
	return b.Bytes(), markersAt
}

// u16Table is a stretch of a 16-bit character table (as console font maps
// hold), which also contains "0\x001\x00...9\x00" but is no token table.
func u16Table() []byte {
	var b bytes.Buffer
	for c := 0; c < 0x80; c++ {
		binary.Write(&b, binary.LittleEndian, uint16(c))
	}
	return b.Bytes()
}

func manyNames(n int) []string {
	s := make([]string, n)
	for i := range s {
		switch i % 3 {
		case 0:
			s[i] = fmt.Sprintf("Tfunc_%d", i)
		case 1:
			s[i] = fmt.Sprintf("tstatic_helper_%d.constprop.0", i)
		default:
			s[i] = fmt.Sprintf("dsome_data_%d", i)
		}
	}
	return s
}

func TestReadKallsyms(t *testing.T) {
	long := "T_R" + strings.Repeat("Zq9", 100) // 303 tokens: a two-byte length
	base := []string{
		"Tpti_init", "t__x86_return_thunk", "T__x86_return_thunk",
		"W__x64_sys_userfaultfd", "tchildren_seq_open.isra.0", "Dsome_global_data",
		"Wweak_only", "tlocal_only.cold", long,
	}
	want := map[string]binding{
		"pti_init": bindGlobal, "__x86_return_thunk": bindGlobal,
		"__x64_sys_userfaultfd": bindWeak, "children_seq_open": bindLocal,
		"some_global_data": bindGlobal, "weak_only": bindWeak, "local_only": bindLocal,
		long[1:]: bindGlobal,
	}
	big := append(append([]string{}, base...), manyNames(700)...) // three markers

	for name, tc := range map[string]struct {
		image []byte
		names []string
	}{
		"plain":           {join(randomBytes(11, 4096), kallsymsTable(t, base), randomBytes(12, 512)), base},
		"unaligned start": {join(randomBytes(13, 4093), kallsymsTable(t, base)), base},
		"several markers": {join(randomBytes(14, 1000), kallsymsTable(t, big), randomBytes(15, 100)), big},
		// digit runs that are not token tables come first and are passed over
		"after u16 tables": {join(u16Table(), randomBytes(16, 333), u16Table(), kallsymsTable(t, base)), base},
	} {
		t.Run(name, func(t *testing.T) {
			syms, ok := readKallsyms(tc.image)
			if !ok {
				t.Fatal("readKallsyms found no table")
			}
			for n, b := range want {
				if syms[n] != b {
					t.Errorf("%s: binding %d, want %d", n, syms[n], b)
				}
			}
			if n := len(tc.names); len(syms) > n || len(syms) < n-3 { // duplicates and suffixes fold
				t.Errorf("decoded %d names from %d", len(syms), n)
			}
			if name == "several markers" && syms["func_699"] != bindGlobal {
				t.Errorf("the last block was not decoded")
			}
		})
	}
}

func TestReadKallsymsHas(t *testing.T) {
	syms, ok := readKallsyms(kallsymsTable(t, []string{"Tstrong", "Wweak", "tlocal"}))
	if !ok {
		t.Fatal("no table")
	}
	for _, tc := range []struct {
		name   string
		global bool
		want   bool
	}{
		{"strong", true, true}, {"strong", false, true},
		{"weak", true, false}, {"weak", false, true},
		{"local", true, false}, {"local", false, true},
		{"absent", false, false}, {"absent", true, false},
	} {
		if got := syms.has(tc.name, tc.global); got != tc.want {
			t.Errorf("has(%q, global=%v) = %v, want %v", tc.name, tc.global, got, tc.want)
		}
	}
}

func TestReadKallsymsRejects(t *testing.T) {
	good, markersAt := buildKallsyms(t, manyNames(600))
	corrupt := func(f func(b []byte)) []byte {
		b := append([]byte(nil), good...)
		f(b)
		return b
	}
	for name, data := range map[string][]byte{
		"empty":  nil,
		"random": randomBytes(17, 1<<16),
		"digits only": join(randomBytes(18, 100),
			[]byte("0\x001\x002\x003\x004\x005\x006\x007\x008\x009\x00"), randomBytes(19, 600)),
		"u16 table": u16Table(),
		// the token index no longer matches the table
		"bad token index": corrupt(func(b []byte) { b[len(b)-2]++ }),
		// the second marker does not match the decoded lengths
		"bad marker": corrupt(func(b []byte) { binary.LittleEndian.PutUint32(b[markersAt+4:], 1) }),
		// the symbol count disagrees with the stream
		"bad count": corrupt(func(b []byte) { binary.LittleEndian.PutUint32(b, 599) }),
		"truncated": good[:len(good)-300],
	} {
		t.Run(name, func(t *testing.T) {
			if syms, ok := readKallsyms(data); ok {
				t.Errorf("readKallsyms accepted it (%d names)", len(syms))
			}
		})
	}
}
