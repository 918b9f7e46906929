// Package devfilter enforces a container's OCI device rules
// (linux.resources.devices) on cgroup v2: it compiles them into an eBPF
// program of type BPF_PROG_TYPE_CGROUP_DEVICE and attaches it to the
// container's cgroup, as runc's libcontainer does (cgroup v2 has no devices
// controller files; access to device nodes is decided by such programs).
//
// Semantics are runc's: the rules are matched from the last to the first,
// the first match decides (so a later rule overrides an earlier one); a
// request that no rule matches is denied. A rule's access is a subset of
// "rwm": a request matches only when all it asks for is in the rule's.
//
// It owns the program and its attachment, nothing else of the cgroup. The
// instructions are hand-encoded (the agent is pure Go and static).
package devfilter

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"unsafe"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Device types and accesses of struct bpf_cgroup_dev_ctx (linux/bpf.h).
const (
	devBlock = 1
	devChar  = 2

	accMknod = 1
	accRead  = 2
	accWrite = 4
)

// eBPF opcodes used.
const (
	ldxW   = unix.BPF_LDX | unix.BPF_MEM | unix.BPF_W // dst = *(u32 *)(src + off)
	andK   = 0x07 | unix.BPF_AND | unix.BPF_K         // BPF_ALU64
	rshK   = 0x07 | unix.BPF_RSH | unix.BPF_K         // BPF_ALU64
	movK   = 0x07 | unix.BPF_MOV | unix.BPF_K         // BPF_ALU64
	movX   = 0x07 | unix.BPF_MOV | unix.BPF_X         // BPF_ALU64
	jneK   = unix.BPF_JMP | 0x50 | unix.BPF_K         // BPF_JNE
	jneX   = unix.BPF_JMP | 0x50 | unix.BPF_X         // BPF_JNE
	exitOp = unix.BPF_JMP | 0x90                      // BPF_EXIT
)

// Insn is one eBPF instruction.
type Insn struct {
	Op   uint8
	Regs uint8 // src<<4 | dst
	Off  int16
	Imm  int32
}

func ins(op uint8, dst, src uint8, off int16, imm int32) Insn {
	return Insn{Op: op, Regs: src<<4 | dst, Off: off, Imm: imm}
}

// Registers: r1 the context; r2 type, r3 access, r4 major, r5 minor.
const (
	r0, r1, r2, r3, r4, r5 = 0, 1, 2, 3, 4, 5
)

// RuncDefaults are the rules runc appends after a spec's own (libcontainer's
// AllowedDevices): mknod of any node, and the devices every container uses
// (null, zero, full, random, urandom, tty, ptmx, /dev/pts/*, tun). containerd's
// CRI gives only "deny all" and relies on them; a caller that wants runc's
// behaviour appends them.
var RuncDefaults = func() []specs.LinuxDeviceCgroup {
	n := func(v int64) *int64 { return &v }
	c := func(major, minor int64) specs.LinuxDeviceCgroup {
		r := specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: n(major), Access: "rwm"}
		if minor >= 0 {
			r.Minor = n(minor)
		}
		return r
	}
	return []specs.LinuxDeviceCgroup{
		{Allow: true, Type: "c", Access: "m"}, {Allow: true, Type: "b", Access: "m"},
		c(1, 3), c(1, 8), c(1, 7), c(5, 0), c(1, 5), c(1, 9), c(136, -1), c(5, 2), c(10, 200),
	}
}()

// Compile makes the program for rules.
func Compile(rules []specs.LinuxDeviceCgroup) ([]Insn, error) {
	prog := []Insn{
		ins(ldxW, r2, r1, 0, 0), ins(andK, r2, 0, 0, 0xffff), // type
		ins(ldxW, r3, r1, 0, 0), ins(rshK, r3, 0, 0, 16), // access
		ins(ldxW, r4, r1, 4, 0), // major
		ins(ldxW, r5, r1, 8, 0), // minor
	}
	for i := len(rules) - 1; i >= 0; i-- {
		block, final, err := ruleBlock(rules[i])
		if err != nil {
			return nil, fmt.Errorf("device rule %d (%+v): %w", i, rules[i], err)
		}
		prog = append(prog, block...)
		if final {
			// The verifier refuses unreachable instructions: the
			// rules before this one can never decide.
			for _, r := range rules[:i] {
				if _, _, err := ruleBlock(r); err != nil {
					return nil, fmt.Errorf("device rule %+v: %w", r, err)
				}
			}
			return prog, nil
		}
	}
	return append(prog, ins(movK, r0, 0, 0, 0), ins(exitOp, 0, 0, 0, 0)), nil
}

// ruleBlock tests one rule; on no match it jumps past its end. final: the
// rule matches every request (what follows it is unreachable).
func ruleBlock(r specs.LinuxDeviceCgroup) (block []Insn, final bool, err error) {
	var checks [][]Insn // each ends in a jump to the block's end, fixed below
	switch r.Type {
	case "", "a":
	case "b":
		checks = append(checks, []Insn{ins(jneK, r2, 0, 0, devBlock)})
	case "c":
		checks = append(checks, []Insn{ins(jneK, r2, 0, 0, devChar)})
	default:
		return nil, false, fmt.Errorf("unknown device type %q", r.Type)
	}
	var acc int32
	for _, c := range r.Access {
		switch c {
		case 'r':
			acc |= accRead
		case 'w':
			acc |= accWrite
		case 'm':
			acc |= accMknod
		default:
			return nil, false, fmt.Errorf("unknown device access %q", r.Access)
		}
	}
	if r.Access == "" {
		acc = accRead | accWrite | accMknod // OCI: empty means all
	}
	if acc != accRead|accWrite|accMknod {
		// The request's access must be within the rule's.
		checks = append(checks, []Insn{ins(movX, r1, r3, 0, 0), ins(andK, r1, 0, 0, acc), ins(jneX, r1, r3, 0, 0)})
	}
	if r.Major != nil && *r.Major >= 0 {
		checks = append(checks, []Insn{ins(jneK, r4, 0, 0, int32(*r.Major))})
	}
	if r.Minor != nil && *r.Minor >= 0 {
		checks = append(checks, []Insn{ins(jneK, r5, 0, 0, int32(*r.Minor))})
	}
	verdict := int32(0)
	if r.Allow {
		verdict = 1
	}
	tail := []Insn{ins(movK, r0, 0, 0, verdict), ins(exitOp, 0, 0, 0, 0)}
	n := len(tail)
	for _, c := range checks {
		n += len(c)
	}
	var out []Insn
	for _, c := range checks {
		for j, in := range c {
			if j == len(c)-1 {
				in.Off = int16(n - len(out) - 1) // to the first instruction after the block
			}
			out = append(out, in)
		}
	}
	return append(out, tail...), len(checks) == 0, nil
}

// Attach loads prog and attaches it to the cgroup v2 directory cgroupDir
// (BPF_F_ALLOW_MULTI, beside any other program there). The attachment lives
// as long as the cgroup.
func Attach(cgroupDir string, prog []Insn) error {
	if len(prog) == 0 {
		return errors.New("devfilter: empty program")
	}
	license := []byte("Apache\x00")
	logBuf := make([]byte, 1<<16)
	var load [128]byte
	put32 := func(b []byte, off int, v uint32) { *(*uint32)(unsafe.Pointer(&b[off])) = v }
	put64 := func(b []byte, off int, v uint64) { *(*uint64)(unsafe.Pointer(&b[off])) = v }
	put32(load[:], 0, unix.BPF_PROG_TYPE_CGROUP_DEVICE)
	put32(load[:], 4, uint32(len(prog)))
	put64(load[:], 8, uint64(uintptr(unsafe.Pointer(&prog[0]))))
	put64(load[:], 16, uint64(uintptr(unsafe.Pointer(&license[0]))))
	put32(load[:], 24, 1) // log_level
	put32(load[:], 28, uint32(len(logBuf)))
	put64(load[:], 32, uint64(uintptr(unsafe.Pointer(&logBuf[0]))))
	fd, _, e := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&load[0])), unsafe.Sizeof(load))
	runtime.KeepAlive(prog)
	runtime.KeepAlive(license)
	if e != 0 {
		msg := strings.TrimRight(string(logBuf[:clen(logBuf)]), "\n")
		return fmt.Errorf("devfilter: load the device program: %w%s", e, verifierLog(msg))
	}
	defer unix.Close(int(fd))
	cg, err := unix.Open(cgroupDir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("devfilter: open cgroup %s: %w", cgroupDir, err)
	}
	defer unix.Close(cg)
	var attach [20]byte
	put32(attach[:], 0, uint32(cg))
	put32(attach[:], 4, uint32(fd))
	put32(attach[:], 8, unix.BPF_CGROUP_DEVICE)
	put32(attach[:], 12, unix.BPF_F_ALLOW_MULTI)
	if _, _, e := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_ATTACH, uintptr(unsafe.Pointer(&attach[0])), unsafe.Sizeof(attach)); e != 0 {
		return fmt.Errorf("devfilter: attach the device program to %s: %w", cgroupDir, e)
	}
	return nil
}

func clen(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return len(b)
}

func verifierLog(s string) string {
	if s == "" {
		return ""
	}
	return " (verifier: " + s + ")"
}
