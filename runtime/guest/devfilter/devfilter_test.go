package devfilter

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// eval runs prog on a request (the subset of eBPF Compile emits).
func eval(t *testing.T, prog []Insn, typ, access, major, minor uint32) int64 {
	t.Helper()
	var reg [11]uint64
	ctx := []uint32{access<<16 | typ, major, minor}
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		dst, src := in.Regs&0xf, in.Regs>>4
		switch in.Op {
		case ldxW:
			if src != r1 || in.Off%4 != 0 || int(in.Off/4) >= len(ctx) {
				t.Fatalf("load from r%d%+d", src, in.Off)
			}
			reg[dst] = uint64(ctx[in.Off/4])
		case andK:
			reg[dst] &= uint64(int64(in.Imm))
		case rshK:
			reg[dst] >>= uint(in.Imm)
		case movK:
			reg[dst] = uint64(int64(in.Imm))
		case movX:
			reg[dst] = reg[src]
		case jneK:
			if reg[dst] != uint64(int64(in.Imm)) {
				pc += int(in.Off)
			}
		case jneX:
			if reg[dst] != reg[src] {
				pc += int(in.Off)
			}
		case exitOp:
			return int64(reg[r0])
		default:
			t.Fatalf("opcode %#x", in.Op)
		}
	}
	t.Fatal("the program ran off its end")
	return 0
}

func i64(v int64) *int64 { return &v }

// CRI's rules for an unprivileged container: deny all, then the default
// devices (runc's list, abridged).
var criRules = []specs.LinuxDeviceCgroup{
	{Allow: false, Access: "rwm"},
	{Allow: true, Type: "c", Major: i64(1), Minor: i64(3), Access: "rwm"},  // /dev/null
	{Allow: true, Type: "c", Major: i64(1), Minor: i64(9), Access: "rwm"},  // /dev/urandom
	{Allow: true, Type: "c", Major: i64(5), Minor: i64(0), Access: "rwm"},  // /dev/tty
	{Allow: true, Type: "c", Major: i64(136), Minor: nil, Access: "rwm"},   // /dev/pts/*
	{Allow: true, Type: "c", Major: i64(10), Minor: i64(200), Access: "r"}, // read-only, for the test
}

var withDefaults = append([]specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}, RuncDefaults...)

func TestCompile(t *testing.T) {
	for _, tc := range []struct {
		name                string
		rules               []specs.LinuxDeviceCgroup
		typ, acc, maj, min_ uint32
		want                int64
	}{
		{"null read", criRules, devChar, accRead, 1, 3, 1},
		{"null mknod", criRules, devChar, accMknod, 1, 3, 1},
		{"null as block", criRules, devBlock, accRead, 1, 3, 0},
		{"zero: not listed", criRules, devChar, accRead, 1, 5, 0},
		{"any pts", criRules, devChar, accRead | accWrite, 136, 42, 1},
		{"read-only rule, read", criRules, devChar, accRead, 10, 200, 1},
		{"read-only rule, write", criRules, devChar, accWrite, 10, 200, 0},
		{"read-only rule, read and write", criRules, devChar, accRead | accWrite, 10, 200, 0},
		{"a block disk", criRules, devBlock, accRead, 8, 0, 0},
		{"privileged: allow all", []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}, devBlock, accWrite, 8, 0, 1},
		{"later deny wins", []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}, {Allow: false, Type: "c", Major: i64(1), Minor: i64(3)}}, devChar, accRead, 1, 3, 0},
		{"later deny, other device", []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}, {Allow: false, Type: "c", Major: i64(1), Minor: i64(3)}}, devChar, accRead, 1, 5, 1},
		{"wildcard major -1", []specs.LinuxDeviceCgroup{{Allow: true, Type: "b", Major: i64(-1), Minor: i64(-1), Access: "r"}}, devBlock, accRead, 253, 7, 1},
		{"no rules: deny", nil, devChar, accRead, 1, 3, 0},
		{"CRI's deny all + runc's defaults: null", withDefaults, devChar, accRead | accWrite, 1, 3, 1},
		{"CRI's deny all + runc's defaults: ptmx", withDefaults, devChar, accRead | accWrite, 5, 2, 1},
		{"CRI's deny all + runc's defaults: mknod a disk", withDefaults, devBlock, accMknod, 8, 0, 1},
		{"CRI's deny all + runc's defaults: read a disk", withDefaults, devBlock, accRead, 8, 0, 0},
		{"CRI's deny all + runc's defaults: /dev/mem", withDefaults, devChar, accRead, 1, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prog, err := Compile(tc.rules)
			if err != nil {
				t.Fatal(err)
			}
			if got := eval(t, prog, tc.typ, tc.acc, tc.maj, tc.min_); got != tc.want {
				t.Errorf("verdict %d, want %d", got, tc.want)
			}
		})
	}
	for _, bad := range []specs.LinuxDeviceCgroup{{Type: "x"}, {Type: "c", Access: "rwx"}} {
		if _, err := Compile([]specs.LinuxDeviceCgroup{bad}); err == nil {
			t.Errorf("Compile(%+v): no error", bad)
		}
	}
}

// TestAttach attaches CRI's rules to a fresh cgroup v2 directory and checks
// in a child process placed in it that /dev/null opens and /dev/zero does
// not (EPERM).
func TestAttach(t *testing.T) {
	if os.Getenv("DEVFILTER_CHILD") == "1" {
		for _, p := range []string{"/dev/null", "/dev/zero"} {
			f, err := os.Open(p)
			if err == nil {
				f.Close()
			}
			fmt.Printf("%s: %v\n", p, errors.Is(err, unix.EPERM))
		}
		os.Exit(0)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: a cgroup and a BPF program")
	}
	root := cgroup2Mount()
	if root == "" {
		t.Skip("no cgroup v2 hierarchy on this host")
	}
	dir, err := os.MkdirTemp(root, "devfilter-test-")
	if err != nil {
		t.Skipf("cannot make a cgroup under %s: %v", root, err)
	}
	t.Cleanup(func() { _ = os.Remove(dir) })
	prog, err := Compile(criRules)
	if err != nil {
		t.Fatal(err)
	}
	if err := Attach(dir, prog); err != nil {
		t.Fatal(err)
	}
	cg, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(cg)
	cmd := exec.Command(os.Args[0], "-test.run=^TestAttach$")
	cmd.Env = append(os.Environ(), "DEVFILTER_CHILD=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cg}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "/dev/null: false") || !strings.Contains(string(out), "/dev/zero: true") {
		t.Fatalf("child in the cgroup: want /dev/null allowed and /dev/zero denied (EPERM), got:\n%s", out)
	}
}

func cgroup2Mount() string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if _, post, ok := strings.Cut(l, " - "); ok && strings.HasPrefix(post, "cgroup2 ") {
			return filepath.Clean(strings.Fields(l)[4])
		}
	}
	return ""
}
