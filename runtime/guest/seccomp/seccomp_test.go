package seccomp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// run executes the filter on a seccomp_data for (arch, nr, args) in
// x/net/bpf's interpreter and returns the action.
func run(t *testing.T, f *Filter, archVal, nr uint32, args ...uint64) Action {
	t.Helper()
	raw := make([]bpf.RawInstruction, len(f.Program))
	for i, in := range f.Program {
		raw[i] = bpf.RawInstruction{Op: in.Code, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	prog, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatalf("the program does not disassemble: %v", prog)
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatalf("bpf VM: %v", err)
	}
	// The interpreter loads words in network order, the kernel in the
	// host's: each 32-bit word goes in big-endian, at the offsets of the
	// kernel's little-endian seccomp_data (an argument's low word first).
	data := make([]byte, 64)
	binary.BigEndian.PutUint32(data[offNr:], nr)
	binary.BigEndian.PutUint32(data[offArch:], archVal)
	for i, a := range args {
		binary.BigEndian.PutUint32(data[offArgs+8*i:], uint32(a))
		binary.BigEndian.PutUint32(data[offArgs+8*i+4:], uint32(a>>32))
	}
	v, err := vm.Run(data)
	if err != nil {
		t.Fatalf("bpf VM run: %v", err)
	}
	return Action(uint32(v))
}

func errnoAct(e unix.Errno) Action { return Action(unix.SECCOMP_RET_ERRNO | uint32(e)) }

func uptr(v uint) *uint { return &v }

func nr(t *testing.T, name string) uint32 {
	t.Helper()
	n, ok := syscallNumbers["x86_64"][name]
	if !ok {
		t.Fatalf("no system call %s", name)
	}
	return n
}

func TestCompile(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the cases use x86_64 system call numbers; this is", runtime.GOARCH)
	}
	allow, kill := Action(unix.SECCOMP_RET_ALLOW), Action(unix.SECCOMP_RET_KILL_PROCESS)
	type call struct {
		arch uint32
		name string
		args []uint64
		want Action
	}
	x := func(name string, want Action, args ...uint64) call {
		return call{auditArchX86_64, name, args, want}
	}
	cases := []struct {
		name    string
		profile specs.LinuxSeccomp
		calls   []call
	}{
		{
			name: "deny list with errno",
			profile: specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.ArchX86_64},
				Syscalls: []specs.LinuxSyscall{{Names: []string{"sethostname", "setdomainname"}, Action: specs.ActErrno}}},
			calls: []call{x("sethostname", errnoAct(unix.EPERM)), x("setdomainname", errnoAct(unix.EPERM)), x("getpid", allow),
				{auditArchI386, "getpid", nil, kill}, // not listed: killed
				{auditArchX86_64, "", nil, kill},     // x32 (nr with bit 30), below
			},
		},
		{
			name: "allow list, default errno, rule errno, unknown names",
			profile: specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: uptr(uint(unix.ENOSYS)),
				Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
				Syscalls: []specs.LinuxSyscall{
					{Names: []string{"read", "write", "open", "close", "no_such_call"}, Action: specs.ActAllow},
					{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: uptr(uint(unix.EXDEV))},
				}},
			calls: []call{x("read", allow), x("write", allow), x("close", allow), x("open", allow), x("getpid", errnoAct(unix.ENOSYS)),
				x("clone3", errnoAct(unix.EXDEV)), {auditArchI386, "getpid", nil, errnoAct(unix.ENOSYS)}},
		},
		{
			name: "conditions on distinct arguments are ANDed, 64-bit",
			profile: specs.LinuxSeccomp{DefaultAction: specs.ActErrno,
				Syscalls: []specs.LinuxSyscall{{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
					{Index: 0, Value: 8, Op: specs.OpEqualTo}, {Index: 1, Value: 1 << 33, Op: specs.OpGreaterEqual}}}}},
			calls: []call{x("personality", allow, 8, 1<<33), x("personality", allow, 8, 1<<34), x("personality", errnoAct(unix.EPERM), 8, 1<<32+5),
				x("personality", errnoAct(unix.EPERM), 8|1<<32, 1<<33), x("personality", errnoAct(unix.EPERM), 9, 1<<33)},
		},
		{
			name: "a repeated argument makes rules that are ORed",
			profile: specs.LinuxSeccomp{DefaultAction: specs.ActErrno,
				Syscalls: []specs.LinuxSyscall{{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
					{Index: 0, Value: 0, Op: specs.OpEqualTo}, {Index: 0, Value: 8, Op: specs.OpEqualTo}}}}},
			calls: []call{x("personality", allow, 0), x("personality", allow, 8), x("personality", errnoAct(unix.EPERM), 4)},
		},
		{
			name: "every operator",
			profile: specs.LinuxSeccomp{DefaultAction: specs.ActAllow,
				Syscalls: []specs.LinuxSyscall{
					{Names: []string{"read"}, Action: specs.ActErrno, ErrnoRet: uptr(1), Args: []specs.LinuxSeccompArg{{Index: 2, Value: 100, Op: specs.OpGreaterThan}}},
					{Names: []string{"write"}, Action: specs.ActErrno, ErrnoRet: uptr(2), Args: []specs.LinuxSeccompArg{{Index: 2, Value: 100, Op: specs.OpLessThan}}},
					{Names: []string{"pread64"}, Action: specs.ActErrno, ErrnoRet: uptr(3), Args: []specs.LinuxSeccompArg{{Index: 2, Value: 100, Op: specs.OpLessEqual}}},
					{Names: []string{"pwrite64"}, Action: specs.ActErrno, ErrnoRet: uptr(4), Args: []specs.LinuxSeccompArg{{Index: 2, Value: 100, Op: specs.OpNotEqual}}},
					{Names: []string{"clone"}, Action: specs.ActErrno, ErrnoRet: uptr(5), Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0x7E020000, ValueTwo: 0, Op: specs.OpMaskedEqual}}},
				}},
			calls: []call{
				x("read", errnoAct(1), 0, 0, 101), x("read", allow, 0, 0, 100), x("read", errnoAct(1), 0, 0, 1<<32),
				x("write", errnoAct(2), 0, 0, 99), x("write", allow, 0, 0, 100), x("write", allow, 0, 0, 1<<32),
				x("pread64", errnoAct(3), 0, 0, 100), x("pread64", allow, 0, 0, 101),
				x("pwrite64", errnoAct(4), 0, 0, 5), x("pwrite64", allow, 0, 0, 100),
				x("clone", errnoAct(5), 0x11), x("clone", allow, 0x10000000), x("clone", errnoAct(5), 1<<40),
			},
		},
		{
			name: "a conditional rule then an unconditional one",
			profile: specs.LinuxSeccomp{DefaultAction: specs.ActKillProcess,
				Syscalls: []specs.LinuxSyscall{
					{Names: []string{"socket"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 40, Op: specs.OpEqualTo}}},
					{Names: []string{"socket", "exit_group"}, Action: specs.ActAllow},
				}},
			calls: []call{x("socket", errnoAct(unix.EPERM), 40), x("socket", allow, 2), x("exit_group", allow), x("getpid", kill)},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := Compile(&c.profile)
			if err != nil {
				t.Fatal(err)
			}
			for _, cl := range c.calls {
				n := uint32(x32SyscallBit)
				if cl.name != "" {
					n = nr(t, cl.name)
					if cl.arch == auditArchI386 {
						n = syscallNumbers["x86"][cl.name]
					}
				}
				if got := run(t, f, cl.arch, n, cl.args...); got != cl.want {
					t.Errorf("%s%v on arch %#x: action %#x, want %#x", cl.name, cl.args, cl.arch, got, cl.want)
				}
			}
		})
	}
}

// TestCompileLongProgram checks jumps past 255 instructions: an allow list
// of every other x86_64 call (so no ranges) with conditional rules, whose
// blocks sit far from the dispatch.
func TestCompileLongProgram(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("x86_64 numbers; this is", runtime.GOARCH)
	}
	var names []string
	for n, v := range syscallNumbers["x86_64"] {
		if v%2 == 0 && v < 400 {
			names = append(names, n)
		}
	}
	p := specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{{Names: names, Action: specs.ActAllow}}}
	var cond []string
	for n, v := range syscallNumbers["x86_64"] {
		if v%2 == 1 && v < 300 {
			cond = append(cond, n)
			p.Syscalls = append(p.Syscalls, specs.LinuxSyscall{Names: []string{n}, Action: specs.ActAllow,
				Args: []specs.LinuxSeccompArg{{Index: 1, Value: uint64(v), Op: specs.OpEqualTo}}})
		}
	}
	f, err := Compile(&p)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Program) < 600 {
		t.Fatalf("program of %d instructions: too short to test long jumps", len(f.Program))
	}
	for _, n := range names {
		if got := run(t, f, auditArchX86_64, nr(t, n)); got != unix.SECCOMP_RET_ALLOW {
			t.Errorf("%s: %#x, want allow", n, got)
		}
	}
	for _, n := range cond {
		v := nr(t, n)
		if got := run(t, f, auditArchX86_64, v, 0, uint64(v)); got != unix.SECCOMP_RET_ALLOW {
			t.Errorf("%s(_, %d): %#x, want allow", n, v, got)
		}
		if got := run(t, f, auditArchX86_64, v, 0, uint64(v)+1); got != errnoAct(unix.EPERM) {
			t.Errorf("%s(_, %d): %#x, want EPERM", n, v+1, got)
		}
	}
}

func TestCompileRefuses(t *testing.T) {
	cases := []struct {
		name    string
		profile specs.LinuxSeccomp
		want    string
	}{
		{"notify", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActNotify}}}, "SCMP_ACT_NOTIFY"},
		{"listener", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, ListenerPath: "/run/agent.sock"}, "listenerPath"},
		{"unknown action", specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_MAYBE"}, "unknown seccomp action"},
		{"unknown operator", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Op: "SCMP_CMP_ALMOST"}}}}}, "unknown operator"},
		{"argument index", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 6, Op: specs.OpEqualTo}}}}}, "out of range"},
		{"unknown flag", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Flags: []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_MAGIC"}}, "unknown seccomp flag"},
		{"errno too big", specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: uptr(1 << 20)}, "16-bit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Compile(&c.profile)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Compile: %v, want an error with %q", err, c.want)
			}
		})
	}
}

// TestLoad loads a filter in a child process (this test binary again) that
// makes getcwd fail with EXDEV and checks that the kernel applies it.
func TestLoad(t *testing.T) {
	if os.Getenv("SECCOMP_TEST_CHILD") == "1" {
		runtime.LockOSThread()
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			fmt.Println("no_new_privs:", err)
			os.Exit(2)
		}
		f, err := Compile(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow,
			Syscalls: []specs.LinuxSyscall{{Names: []string{"getcwd"}, Action: specs.ActErrno, ErrnoRet: uptr(uint(unix.EXDEV))}}})
		if err == nil {
			err = f.Load()
		}
		if err != nil {
			fmt.Println("load:", err)
			os.Exit(2)
		}
		buf := make([]byte, 256)
		_, err = unix.Getcwd(buf)
		fmt.Printf("getcwd: %v\n", errors.Is(err, unix.EXDEV))
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestLoad$")
	cmd.Env = append(os.Environ(), "SECCOMP_TEST_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "getcwd: true") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
