// Package seccomp compiles an OCI seccomp profile (specs.LinuxSeccomp) into
// a classic BPF program for seccomp(2), and loads it on the calling thread.
// It is pure Go: the guest agent is a static binary (CGO_ENABLED=0), so
// libseccomp is not available.
//
// It owns the profile's semantics as runc (through libseccomp) gives them:
// the default action and errno, each rule's action and errnoRet, argument
// conditions of every operator (64-bit comparisons; on 32-bit
// architectures the low word only), conditions on distinct arguments ANDed
// in one rule and conditions repeating an argument split into one rule each
// (ORed), system call names unknown to an architecture skipped, the
// architectures listed, and any architecture the kernel can report that the
// profile does not list killed (libseccomp's bad-architecture action). What
// it cannot honour is an error, never a filter silently weaker than asked:
// SCMP_ACT_NOTIFY and listenerPath (no supervisor in the guest), unknown
// actions, operators or flags. x32 system calls are killed even where the
// profile lists SCMP_ARCH_X32 (stricter than libseccomp; the guest runs
// no x32 programs).
//
// It does not decide whether a container gets a profile (the runtime's
// caller does, through the spec) and keeps no state.
package seccomp

import (
	"errors"
	"fmt"
	"runtime"
	"sort"
	"unsafe"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Audit architecture values (linux/audit.h) and the x32 system call bit.
const (
	auditArchX86_64  = 0xc000003e
	auditArchI386    = 0x40000003
	auditArchAarch64 = 0xc00000b7
	auditArchARM     = 0x40000028
	x32SyscallBit    = 0x40000000
)

// arch is one architecture the kernel may report in seccomp_data.arch.
type arch struct {
	name  string // the table's name (syscallNumbers)
	scmp  specs.Arch
	audit uint32
	is32  bool
}

// kernelArches are the architectures a kernel of runtime.GOARCH reports:
// its own and its compat one.
func kernelArches() []arch {
	switch runtime.GOARCH {
	case "amd64":
		return []arch{{"x86_64", specs.ArchX86_64, auditArchX86_64, false}, {"x86", specs.ArchX86, auditArchI386, true}}
	case "arm64":
		return []arch{{"aarch64", specs.ArchAARCH64, auditArchAarch64, false}, {"arm", specs.ArchARM, auditArchARM, true}}
	}
	return nil
}

// seccomp_data offsets.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// Classic BPF opcodes.
const (
	ldAbs = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	jeq   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	jgt   = unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K
	jge   = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
	jset  = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
	ja    = unix.BPF_JMP | unix.BPF_JA
	ret   = unix.BPF_RET | unix.BPF_K
	andK  = unix.BPF_ALU | unix.BPF_AND | unix.BPF_K
)

// maxInstructions is the kernel's BPF_MAXINSNS for seccomp filters.
const maxInstructions = 4096

// Action is a seccomp return value (SECCOMP_RET_*, with its data).
type Action uint32

// action converts an OCI action (and its errno) into a return value.
func action(a specs.LinuxSeccompAction, errno *uint, defaultErrno uint32) (Action, error) {
	switch a {
	case specs.ActAllow:
		return unix.SECCOMP_RET_ALLOW, nil
	case specs.ActKill, specs.ActKillThread:
		return unix.SECCOMP_RET_KILL_THREAD, nil
	case specs.ActKillProcess:
		return unix.SECCOMP_RET_KILL_PROCESS, nil
	case specs.ActTrap:
		return unix.SECCOMP_RET_TRAP, nil
	case specs.ActLog:
		return unix.SECCOMP_RET_LOG, nil
	case specs.ActErrno, specs.ActTrace:
		e := defaultErrno
		if errno != nil {
			e = uint32(*errno)
		}
		if e > unix.SECCOMP_RET_DATA {
			return 0, fmt.Errorf("errno %d of %s does not fit seccomp's 16-bit data", e, a)
		}
		if a == specs.ActTrace {
			return Action(unix.SECCOMP_RET_TRACE | e), nil
		}
		return Action(unix.SECCOMP_RET_ERRNO | e), nil
	case specs.ActNotify:
		return 0, errors.New("seccomp action SCMP_ACT_NOTIFY is not supported: the guest has no seccomp supervisor")
	}
	return 0, fmt.Errorf("unknown seccomp action %q", a)
}

var filterFlags = map[specs.LinuxSeccompFlag]uintptr{
	specs.LinuxSeccompFlagLog:              unix.SECCOMP_FILTER_FLAG_LOG,
	specs.LinuxSeccompFlagSpecAllow:        unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW,
	specs.LinuxSeccompFlagWaitKillableRecv: unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
	"SECCOMP_FILTER_FLAG_TSYNC":            unix.SECCOMP_FILTER_FLAG_TSYNC,
}

// Actions are the OCI actions Compile accepts (for the runtime's features).
func Actions() []string {
	return []string{string(specs.ActAllow), string(specs.ActErrno), string(specs.ActKill), string(specs.ActKillProcess),
		string(specs.ActKillThread), string(specs.ActLog), string(specs.ActTrace), string(specs.ActTrap)}
}

// Operators are the OCI argument operators Compile accepts.
func Operators() []string {
	var o []string
	for op := range operators {
		o = append(o, string(op))
	}
	sort.Strings(o)
	return o
}

// Archs are the architectures Compile writes rules for on this kernel.
func Archs() []string {
	var a []string
	for _, ar := range kernelArches() {
		a = append(a, string(ar.scmp))
	}
	return a
}

// Flags are the OCI filter flags Compile accepts.
func Flags() []string {
	var f []string
	for fl := range filterFlags {
		f = append(f, string(fl))
	}
	sort.Strings(f)
	return f
}

// Filter is a compiled profile.
type Filter struct {
	Program []unix.SockFilter
	Flags   uintptr
}

// Compile turns profile into a filter for this kernel's architectures.
func Compile(profile *specs.LinuxSeccomp) (*Filter, error) {
	if profile.ListenerPath != "" || profile.ListenerMetadata != "" {
		return nil, fmt.Errorf("seccomp listenerPath %q is not supported: the guest has no seccomp supervisor", profile.ListenerPath)
	}
	f := &Filter{}
	for _, fl := range profile.Flags {
		v, ok := filterFlags[fl]
		if !ok {
			return nil, fmt.Errorf("unknown seccomp flag %q", fl)
		}
		f.Flags |= v
	}
	defaultErrno := uint32(unix.EPERM)
	if profile.DefaultErrnoRet != nil {
		defaultErrno = uint32(*profile.DefaultErrnoRet)
	}
	def, err := action(profile.DefaultAction, nil, defaultErrno)
	if err != nil {
		return nil, fmt.Errorf("default action: %w", err)
	}
	rules, err := compileRules(profile.Syscalls, defaultErrno)
	if err != nil {
		return nil, err
	}
	listed := map[specs.Arch]bool{}
	for _, a := range profile.Architectures {
		listed[a] = true
	}
	arches := kernelArches()
	if len(arches) == 0 {
		return nil, fmt.Errorf("seccomp: no system call table for %s", runtime.GOARCH)
	}
	if len(profile.Architectures) == 0 {
		listed[arches[0].scmp] = true // libseccomp: the native architecture
	}
	var a asm
	a.ld(offArch)
	for _, ar := range arches {
		if listed[ar.scmp] {
			a.jeqTo(ar.audit, "arch:"+ar.name)
		}
	}
	a.ret(unix.SECCOMP_RET_KILL_PROCESS) // an architecture the profile does not list
	for _, ar := range arches {
		if listed[ar.scmp] {
			a.label("arch:" + ar.name)
			if err := rules.emit(&a, ar, def); err != nil {
				return nil, err
			}
		}
	}
	prog, err := a.assemble()
	if err != nil {
		return nil, err
	}
	if len(prog) > maxInstructions {
		return nil, fmt.Errorf("seccomp profile compiles to %d BPF instructions, more than the kernel's %d", len(prog), maxInstructions)
	}
	f.Program = prog
	return f, nil
}

// rule is one (possibly conditional) action for a system call.
type rule struct {
	conds  []specs.LinuxSeccompArg // ANDed; none: unconditional
	action Action
}

// ruleSet is the profile's rules by system call name, each name's rules in
// the profile's order.
type ruleSet struct {
	names []string
	rules map[string][]rule
}

func compileRules(syscalls []specs.LinuxSyscall, defaultErrno uint32) (*ruleSet, error) {
	rs := &ruleSet{rules: map[string][]rule{}}
	for i, s := range syscalls {
		act, err := action(s.Action, s.ErrnoRet, defaultErrno)
		if err != nil {
			return nil, fmt.Errorf("seccomp rule %d (%v): %w", i, s.Names, err)
		}
		for _, c := range s.Args {
			if c.Index > 5 {
				return nil, fmt.Errorf("seccomp rule %d (%v): argument index %d out of range", i, s.Names, c.Index)
			}
			if _, ok := operators[c.Op]; !ok {
				return nil, fmt.Errorf("seccomp rule %d (%v): unknown operator %q", i, s.Names, c.Op)
			}
		}
		// As runc: conditions on distinct arguments make one rule;
		// when an argument repeats, each condition is a rule of its own.
		var variants [][]specs.LinuxSeccompArg
		if repeatsIndex(s.Args) {
			for _, c := range s.Args {
				variants = append(variants, []specs.LinuxSeccompArg{c})
			}
		} else {
			variants = [][]specs.LinuxSeccompArg{s.Args}
		}
		for _, n := range s.Names {
			if _, ok := rs.rules[n]; !ok {
				rs.names = append(rs.names, n)
			}
			for _, v := range variants {
				rs.rules[n] = append(rs.rules[n], rule{conds: v, action: act})
			}
		}
	}
	return rs, nil
}

func repeatsIndex(args []specs.LinuxSeccompArg) bool {
	seen := map[uint]bool{}
	for _, a := range args {
		if seen[a.Index] {
			return true
		}
		seen[a.Index] = true
	}
	return false
}

var operators = map[specs.LinuxSeccompOperator]bool{
	specs.OpNotEqual: true, specs.OpLessThan: true, specs.OpLessEqual: true, specs.OpEqualTo: true,
	specs.OpGreaterEqual: true, specs.OpGreaterThan: true, specs.OpMaskedEqual: true,
}

// emit writes one architecture's part: A holds the system call number
// throughout the dispatch; each call with conditions has a block of its own
// (which loads arguments), unconditional calls are grouped in ranges of
// consecutive numbers with one action.
func (rs *ruleSet) emit(a *asm, ar arch, def Action) error {
	table := syscallNumbers[ar.name]
	plain := map[uint32]Action{}
	conditional := map[uint32][]rule{}
	for _, n := range rs.names {
		nr, ok := table[n]
		if !ok {
			continue // unknown on this architecture: skipped, as libseccomp does
		}
		for _, r := range rs.rules[n] {
			if _, done := plain[nr]; done {
				break // an unconditional rule ends this call's chain
			}
			if len(r.conds) == 0 {
				plain[nr] = r.action
			} else {
				conditional[nr] = append(conditional[nr], r)
			}
		}
	}
	a.ld(offNr)
	if ar.audit == auditArchX86_64 {
		a.jsetTo(x32SyscallBit, "x32")
	}
	// Calls with conditions first: their blocks end in their own action.
	var cnrs []uint32
	for nr := range conditional {
		cnrs = append(cnrs, nr)
	}
	sort.Slice(cnrs, func(i, j int) bool { return cnrs[i] < cnrs[j] })
	for _, nr := range cnrs {
		a.jeqTo(nr, fmt.Sprintf("%s:%d", ar.name, nr))
	}
	// Plain calls, as ranges of one action, skipping the default action.
	var pnrs []uint32
	for nr, act := range plain {
		if _, c := conditional[nr]; !c && act != def {
			pnrs = append(pnrs, nr)
		}
	}
	sort.Slice(pnrs, func(i, j int) bool { return pnrs[i] < pnrs[j] })
	for i := 0; i < len(pnrs); {
		j := i
		for j+1 < len(pnrs) && pnrs[j+1] == pnrs[j]+1 && plain[pnrs[j+1]] == plain[pnrs[i]] {
			j++
		}
		lo, hi, act := pnrs[i], pnrs[j], plain[pnrs[i]]
		if lo == hi {
			a.jump(jeq, lo, 0, 1)
		} else {
			a.jump(jge, lo, 0, 2)
			a.jump(jgt, hi, 1, 0)
		}
		a.ret(act)
		i = j + 1
	}
	a.ret(def)
	for _, nr := range cnrs {
		a.label(fmt.Sprintf("%s:%d", ar.name, nr))
		for k, r := range conditional[nr] {
			next := fmt.Sprintf("%s:%d:%d", ar.name, nr, k+1)
			for _, c := range r.conds {
				emitCond(a, c, ar.is32, next)
			}
			a.ret(r.action)
			a.label(next)
		}
		final := def
		if act, ok := plain[nr]; ok {
			final = act
		}
		a.ret(final)
	}
	if ar.audit == auditArchX86_64 {
		a.label("x32")
		a.ret(unix.SECCOMP_RET_KILL_PROCESS)
	}
	return nil
}

// emitCond checks one argument condition; on failure it jumps to fail,
// else falls through.
func emitCond(a *asm, c specs.LinuxSeccompArg, is32 bool, fail string) {
	lo := offArgs + 8*uint32(c.Index)
	hi := lo + 4
	v, v2 := c.Value, c.ValueTwo
	pass := a.newLabel()
	// cmp64 compares the argument with x by op (one of >, >=), jumping to
	// pass when the comparison holds and to fail when it does not.
	cmp := func(op uint16, x uint64, whenTrue, whenFalse string) {
		if !is32 {
			a.ld(hi)
			a.jumpTo(jgt, uint32(x>>32), whenTrue, "")
			a.jumpTo(jeq, uint32(x>>32), "", whenFalse)
		}
		a.ld(lo)
		a.jumpTo(op, uint32(x), whenTrue, whenFalse)
	}
	eq := func(x uint64, whenTrue, whenFalse string) {
		if !is32 {
			a.ld(hi)
			a.jumpTo(jeq, uint32(x>>32), "", whenFalse)
		}
		a.ld(lo)
		a.jumpTo(jeq, uint32(x), whenTrue, whenFalse)
	}
	switch c.Op {
	case specs.OpEqualTo:
		eq(v, pass, fail)
	case specs.OpNotEqual:
		eq(v, fail, pass)
	case specs.OpGreaterThan:
		cmp(jgt, v, pass, fail)
	case specs.OpGreaterEqual:
		cmp(jge, v, pass, fail)
	case specs.OpLessThan: // not >=
		cmp(jge, v, fail, pass)
	case specs.OpLessEqual: // not >
		cmp(jgt, v, fail, pass)
	case specs.OpMaskedEqual: // (arg & value) == valueTwo
		if !is32 {
			a.ld(hi)
			a.alu(andK, uint32(v>>32))
			a.jumpTo(jeq, uint32(v2>>32), "", fail)
		}
		a.ld(lo)
		a.alu(andK, uint32(v))
		a.jumpTo(jeq, uint32(v2), pass, fail)
	}
	a.label(pass)
}

// Load installs f on the calling thread (the caller has locked it to its
// goroutine): the thread and what it execs or forks are filtered. It needs
// no_new_privs or CAP_SYS_ADMIN.
func (f *Filter) Load() error {
	prog := unix.SockFprog{Len: uint16(len(f.Program)), Filter: &f.Program[0]}
	_, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, f.Flags, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(f)
	if e != 0 {
		return fmt.Errorf("seccomp(SECCOMP_SET_MODE_FILTER): %w", e)
	}
	return nil
}
