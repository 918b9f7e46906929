package kernel

import (
	"bytes"
	"encoding/binary"
	"strings"
)

// symbols is a kernel's symbol names as its kallsyms table lists them
// (CONFIG_KALLSYMS), each with the strongest binding any symbol of that name
// has. A name carries no compiler-made suffix: "tsi_create_common.part.0" is
// "tsi_create_common".
type symbols map[string]binding

// binding orders kallsyms types: local (lower case: t, d, r, b...), weak
// (W, V, w, v), strong global (other upper case: T, D, R, B...).
type binding uint8

const (
	bindLocal binding = iota + 1
	bindWeak
	bindGlobal
)

func bindingOf(typ byte) binding {
	switch {
	case typ == 'W' || typ == 'V' || typ == 'w' || typ == 'v':
		return bindWeak
	case typ >= 'A' && typ <= 'Z':
		return bindGlobal
	default:
		return bindLocal
	}
}

// has reports whether a symbol of this name exists (a strong global one, if
// global is set).
func (s symbols) has(name string, global bool) bool {
	b := s[name]
	if global {
		return b == bindGlobal
	}
	return b != 0
}

// readKallsyms finds and decodes the kallsyms table of a kernel image whose
// .rodata lies in data as it lies in memory (a vmlinux, or libkrunfw's
// uncompressed bundle): Linux 6.x scripts/kallsyms.c writes, each label
// 8-byte aligned, kallsyms_num_syms (u32), kallsyms_names (per symbol a
// ULEB128 length then that many token indices, the first token's first byte
// being the symbol's type), kallsyms_markers (u32 stream offsets of every
// 256th symbol), kallsyms_token_table (256 NUL-terminated strings) and
// kallsyms_token_index (256 u16 offsets into the token table).
//
// The token table is found by the run of single-digit tokens "0".."9" at
// indices 0x30-0x39 (every digit occurs in some symbol, so none is replaced
// by a compression token), and accepted only when the token index that
// follows it matches it exactly; the names are accepted only when every
// marker and the stream's end agree with the decoded lengths. Anything else
// is "no table": ok is false, never a partial answer.
func readKallsyms(data []byte) (symbols, bool) {
	digits := []byte("0\x001\x002\x003\x004\x005\x006\x007\x008\x009\x00")
	for off := 0; ; {
		i := bytes.Index(data[off:], digits)
		if i < 0 {
			return nil, false
		}
		at := off + i
		off = at + 1
		start, tokens, ok := tokenTable(data, at)
		if !ok {
			continue
		}
		if syms, ok := decodeNames(data, start, tokens); ok {
			return syms, true
		}
	}
}

// tokenTable reads the 256 tokens of a table whose token 0x30 ("0") starts
// at zero, and checks them against the token index that must follow.
func tokenTable(data []byte, zero int) (start int, tokens [256][]byte, ok bool) {
	// Walk back over tokens 0x2f..0x00: each is non-empty and NUL-terminated.
	p := zero
	for range 0x30 {
		if p < 2 || data[p-1] != 0 {
			return 0, tokens, false
		}
		// The NUL before this token, looked for no further back than the
		// longest token; none at all is fine only at the start of data.
		lo := max(0, p-2-maxTokenLen)
		j := bytes.LastIndexByte(data[lo:p-1], 0)
		if j >= 0 {
			j += lo
		} else if lo > 0 {
			return 0, tokens, false
		}
		if p-1-(j+1) < 1 {
			return 0, tokens, false
		}
		p = j + 1
	}
	start = p
	var offsets [256]int
	q := start
	for k := range 256 {
		e := bytes.IndexByte(data[q:], 0)
		if e < 1 || e > maxTokenLen {
			return 0, tokens, false
		}
		offsets[k] = q - start
		tokens[k] = data[q : q+e]
		q += e + 1
	}
	idx := alignUp(q, start)
	if idx+512 > len(data) {
		return 0, tokens, false
	}
	for k := range 256 {
		if int(binary.LittleEndian.Uint16(data[idx+2*k:])) != offsets[k] {
			return 0, tokens, false
		}
	}
	return start, tokens, true
}

// maxTokenLen bounds one expanded token; real ones are a few bytes long.
const maxTokenLen = 64

// maxSymbols bounds kallsyms_num_syms; a distribution kernel has ~200,000.
const maxSymbols = 4 << 20

// ksymNameLen is KSYM_NAME_LEN: no symbol's compressed form is longer.
const ksymNameLen = 512

// alignUp rounds p up to the next position 8-aligned relative to ref (a
// position known to be 8-aligned in memory).
func alignUp(p, ref int) int {
	return p + ((ref-p)%8+8)%8
}

// decodeNames finds kallsyms_markers and kallsyms_num_syms before the token
// table at tt, and decodes every name.
func decodeNames(data []byte, tt int, tokens [256][]byte) (symbols, bool) {
	u32 := func(p int) (uint32, bool) {
		if p < 0 || p+4 > len(data) {
			return 0, false
		}
		return binary.LittleEndian.Uint32(data[p:]), true
	}
	for cnt := 1; cnt <= maxSymbols/256; cnt++ {
		// The markers end just before the token table (after padding to 8).
		m := tt - 4*cnt - 4*(cnt%2)
		if m < 8 {
			return nil, false
		}
		if v, _ := u32(m); v != 0 {
			continue
		}
		markers := make([]uint32, cnt)
		increasing := true
		for k := range cnt {
			markers[k], _ = u32(m + 4*k)
			if k > 0 && markers[k] <= markers[k-1] {
				increasing = false
				break
			}
		}
		if !increasing {
			continue
		}
		// kallsyms_num_syms sits 8 bytes before the names, which end (after
		// padding) at the markers; the last marker's block holds at most 256
		// names of at most ksymNameLen+2 bytes.
		last := int(markers[cnt-1])
		hi := m - last - 8
		lo := hi - 256*(ksymNameLen+2)
		for p := alignUp(hi-7, tt); p >= lo && p >= 0; p -= 8 {
			n, _ := u32(p)
			if n == 0 || n > maxSymbols || (int(n)+255)/256 != cnt {
				continue
			}
			if syms, ok := decodeStream(data, p+8, m, int(n), markers, tokens, tt); ok {
				return syms, true
			}
		}
	}
	return nil, false
}

// decodeStream decodes n names from start, checking every 256th against its
// marker and the end against the markers' position.
func decodeStream(data []byte, start, markersAt, n int, markers []uint32, tokens [256][]byte, tt int) (symbols, bool) {
	syms := make(symbols, n)
	var name []byte
	p := start
	for k := range n {
		if k%256 == 0 && p-start != int(markers[k/256]) {
			return nil, false
		}
		if p >= markersAt {
			return nil, false
		}
		l := int(data[p])
		p++
		if l&0x80 != 0 {
			if p >= markersAt {
				return nil, false
			}
			l = l&0x7f | int(data[p])<<7
			p++
		}
		if l == 0 || p+l > markersAt {
			return nil, false
		}
		name = name[:0]
		for _, c := range data[p : p+l] {
			name = append(name, tokens[c]...)
		}
		p += l
		if len(name) < 2 {
			return nil, false
		}
		typ, base := name[0], string(name[1:])
		if dot := strings.IndexByte(base, '.'); dot > 0 {
			base = base[:dot]
		}
		if b := bindingOf(typ); b > syms[base] {
			syms[base] = b
		}
	}
	if alignUp(p, tt) != markersAt {
		return nil, false
	}
	return syms, true
}
