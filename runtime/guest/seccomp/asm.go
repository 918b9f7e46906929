package seccomp

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// asm is a classic BPF assembler with symbolic forward labels. A conditional
// jump to a label farther than 255 instructions goes through an
// unconditional jump (whose offset is 32 bits) placed right after it.
type asm struct {
	ins    []insn
	labels map[string]int
	n      int // for newLabel
}

type insn struct {
	code   uint16
	k      uint32
	jt, jf uint8
	// Labels the jumps go to ("" = the next instruction); for ja, jt names
	// the target.
	tLabel, fLabel string
}

func (a *asm) emit(i insn) { a.ins = append(a.ins, i) }

func (a *asm) ld(off uint32)             { a.emit(insn{code: ldAbs, k: off}) }
func (a *asm) ret(v Action)              { a.emit(insn{code: ret, k: uint32(v)}) }
func (a *asm) alu(code uint16, k uint32) { a.emit(insn{code: code, k: k}) }

// jump is a conditional jump with fixed offsets.
func (a *asm) jump(code uint16, k uint32, jt, jf uint8) {
	a.emit(insn{code: code, k: k, jt: jt, jf: jf})
}

// jumpTo is a conditional jump to labels ("" = fall through).
func (a *asm) jumpTo(code uint16, k uint32, t, f string) {
	a.emit(insn{code: code, k: k, tLabel: t, fLabel: f})
}

// jeqTo jumps to label when A == k, else falls through.
func (a *asm) jeqTo(k uint32, label string) { a.jumpTo(jeq, k, label, "") }

// jsetTo jumps to label when A & k != 0, else falls through.
func (a *asm) jsetTo(k uint32, label string) { a.jumpTo(jset, k, label, "") }

func (a *asm) label(name string) {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	a.labels[name] = len(a.ins)
}

func (a *asm) newLabel() string {
	a.n++
	return fmt.Sprintf(".L%d", a.n)
}

// assemble resolves the labels. Every label is forward (BPF cannot jump
// back). A conditional jump with one label too far away (and falling
// through on its other branch) becomes "jcond to the next instruction or
// over it; ja label", which moves what follows: resolution repeats until
// every jump fits.
func (a *asm) assemble() ([]unix.SockFilter, error) {
	offset := func(i int, label string) (int, error) {
		target, ok := a.labels[label]
		if !ok {
			return 0, fmt.Errorf("seccomp assembler: undefined label %s", label)
		}
		if d := target - i - 1; d >= 0 {
			return d, nil
		}
		return 0, fmt.Errorf("seccomp assembler: backward jump to %s", label)
	}
	for i := 0; i < len(a.ins); i++ {
		in := &a.ins[i]
		if in.code == ja {
			continue
		}
		for _, side := range []struct{ label, other *string }{{&in.tLabel, &in.fLabel}, {&in.fLabel, &in.tLabel}} {
			if *side.label == "" {
				continue
			}
			d, err := offset(i, *side.label)
			if err != nil {
				return nil, err
			}
			if d <= 255 {
				continue
			}
			if *side.other != "" {
				return nil, fmt.Errorf("seccomp assembler: jump to %s too far for a two-way branch", *side.label)
			}
			target := *side.label
			if side.label == &in.tLabel {
				in.jt, in.jf = 0, 1
			} else {
				in.jt, in.jf = 1, 0
			}
			in.tLabel, in.fLabel = "", ""
			a.insertJa(i+1, target)
			i = -1 // offsets before i may have grown past 255: start over
			break
		}
	}
	out := make([]unix.SockFilter, len(a.ins))
	for i, in := range a.ins {
		f := unix.SockFilter{Code: in.code, K: in.k, Jt: in.jt, Jf: in.jf}
		var err error
		var d int
		switch {
		case in.code == ja:
			d, err = offset(i, in.tLabel)
			f.K = uint32(d)
		default:
			if in.tLabel != "" {
				d, err = offset(i, in.tLabel)
				f.Jt = uint8(d)
			}
			if err == nil && in.fLabel != "" {
				d, err = offset(i, in.fLabel)
				f.Jf = uint8(d)
			}
		}
		if err != nil {
			return nil, err
		}
		out[i] = f
	}
	return out, nil
}

// insertJa puts "ja label" at position at, moving labels at or after it.
func (a *asm) insertJa(at int, label string) {
	a.ins = append(a.ins, insn{})
	copy(a.ins[at+1:], a.ins[at:])
	a.ins[at] = insn{code: ja, tLabel: label}
	for n, p := range a.labels {
		if p >= at {
			a.labels[n] = p + 1
		}
	}
}
