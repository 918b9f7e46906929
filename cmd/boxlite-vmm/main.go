// Command boxlite-vmm is the per-sandbox VMM process: it loads libkrun at run
// time (dlopen), configures one micro-VM and hands the process over to
// krun_start_enter, which never returns on success: when the guest ends,
// libkrun _exit()s with the workload's status. runtime/vmm starts it, one per
// sandbox, in its own process group.
//
//	boxlite-vmm -probe [-libkrun PATH]
//	boxlite-vmm -jail DIR [-libkrun PATH] [-allow-test-double] [-krunfw PATH]
//	            -cpus N -memory-mib N -root DIR [-workdir DIR]
//	            [-vsock PORT:SOCKET]... [-vsock-connect PORT:SOCKET]...
//	            [-console FILE] [-log-level N]
//	            [-net-tap NAME -net-mac MAC] [-no-tsi] [-env K=V]... -- EXEC [ARG]...
//
// -jail DIR confines the process before anything else runs (jail.c): a mount
// tree whose root is DIR, with /proc, /dev/kvm (and /dev/net/tun) and the
// guest root inside, the capabilities libkrun uses and no_new_privs. -root,
// -vsock's socket paths and -console are then paths inside DIR; -libkrun and
// -krunfw are the host's paths, loaded before the pivot. A VM is never
// started without -jail.
//
// EXEC is the workload's path inside the guest root; the ARGs follow it (as in
// krun_set_exec, argv does not repeat EXEC). Each -vsock bridges a listening
// host Unix socket to the guest's vsock PORT (krun_add_vsock_port2, listen);
// each -vsock-connect has libkrun connect to the host Unix socket (which must
// be listening) when the guest connects to vsock PORT of the host (listen
// false): the agent announces it is ready that way.
//
// -net-tap gives the guest a virtio-net device (its eth0) with address MAC,
// backed by the TAP device NAME of the VMM's network namespace
// (krun_add_net_tap, which also turns libkrun's TSI off); without it the guest
// has TSI, unless -no-tsi.
//
// -no-tsi keeps TSI off in any case (krun_disable_implicit_vsock, then
// krun_add_vsock with no TSI feature, before the vsock ports: libkrun 1.17
// or newer), for a kernel without libkrunfw's TSI patch: with TSI on, libkrun
// appends "tsi_hijack" to the kernel command line, which such a kernel hands
// to the workload as an argument, and libkrun's init (1.18.1+) then
// configures a dummy0 interface for TSI.
//
// -krunfw PATH loads the kernel library (libkrunfw.so.5) from PATH before
// libkrun, so libkrun's own dlopen("libkrunfw.so.5") gets that very object (the
// loader matches it by soname) and can never fall back to another variant
// found on the system's library path.
//
// -probe loads libkrun, checks that it has every function the VMM calls and
// tells its version (krunver.c), prints one JSON object (probeReport) and
// exits 0, 3 when it cannot be used, or 8 when it is too old for the staged
// kernels; it starts no VM. `containerd-shim-boxlite-v2 check` runs it, since
// the shim itself is built without cgo.
//
// libkrun's version: libkrun has no function that returns it, so krunver.c
// tells it from the real file name (libkrun.so.1.X.Y, as libkrun installs
// itself) and, always, from the exported symbols (a floor); when the two
// disagree the symbols win. The staged kernels need libkrun 1.18.1 or newer;
// every VMM start (jail.c) and -probe refuse anything else, including a
// 1.18.x known only by its symbols (1.18.0 exports the same ones).
//
// The exit status means the following only until krun_start_enter has taken
// over; after that it is libkrun's (the workload's status, or 1 on a VMM
// failure) and never a container's exit status:
//
//	2  usage error
//	3  libkrun is not available (cannot be loaded, or lacks a function)
//	4  libkrun is the test double and -allow-test-double was not given
//	5  a krun_* call failed
//	6  the kernel library given by -krunfw cannot be loaded
//	7  the jail cannot be set up
//	8  libkrun is too old for the staged kernels (or its version cannot
//	   be told well enough to know it is not)
//go:build cgo

package main

/*
#cgo LDFLAGS: -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jail.h"
#include "krunver.h"

static void *lib_open(const char *path) { return dlopen(path, RTLD_NOW | RTLD_LOCAL); }
static const char *lib_error(void) { const char *e = dlerror(); return e ? e : "unknown dlopen error"; }
static void *lib_sym(void *h, const char *name) { return dlsym(h, name); }
static const char *lib_path(void *h) {
	struct link_map *lm = NULL;
	return dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm ? lm->l_name : "";
}

typedef int32_t (*fn_u)(uint32_t);
typedef int32_t (*fn_u_u8_u)(uint32_t, uint8_t, uint32_t);
typedef int32_t (*fn_u_s)(uint32_t, const char *);
typedef int32_t (*fn_u_s_v_v)(uint32_t, const char *, const char *const *, const char *const *);
typedef int32_t (*fn_u_u_s_b)(uint32_t, uint32_t, const char *, bool);
typedef int32_t (*fn_u_s_mac_u_u)(uint32_t, char *, uint8_t *, uint32_t, uint32_t);

typedef int32_t (*fn_u_u)(uint32_t, uint32_t);

static int32_t call_u(void *f, uint32_t a) { return ((fn_u)f)(a); }
static int32_t call_u_u(void *f, uint32_t a, uint32_t b) { return ((fn_u_u)f)(a, b); }
static int32_t call_u_u8_u(void *f, uint32_t a, uint8_t b, uint32_t c) { return ((fn_u_u8_u)f)(a, b, c); }
static int32_t call_u_s(void *f, uint32_t a, const char *s) { return ((fn_u_s)f)(a, s); }
static int32_t call_u_s_v_v(void *f, uint32_t a, const char *s, char **v, char **w) {
	return ((fn_u_s_v_v)f)(a, s, (const char *const *)v, (const char *const *)w);
}
static int32_t call_u_u_s_b(void *f, uint32_t a, uint32_t b, const char *s, bool l) { return ((fn_u_u_s_b)f)(a, b, s, l); }
static int32_t call_net_tap(void *f, uint32_t ctx, char *name, uint8_t *mac) {
	// No offload features: the kernel segments and checksums what the TAP
	// gets, which is always right, whatever the pod interface offloads.
	return ((fn_u_s_mac_u_u)f)(ctx, name, mac, 0, 0);
}
*/
import "C"

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

func init() {
	// Keep main on the main OS thread: libkrun runs the VMM on the thread
	// that calls krun_start_enter.
	runtime.LockOSThread()
}

type vsockFlag struct {
	ports []uint32
	paths []string
}

func (v *vsockFlag) String() string { return "" }

func (v *vsockFlag) Set(s string) error {
	port, path, ok := strings.Cut(s, ":")
	if !ok || path == "" {
		return fmt.Errorf("want PORT:SOCKETPATH, got %q", s)
	}
	n, err := strconv.ParseUint(port, 10, 32)
	if err != nil {
		return fmt.Errorf("bad vsock port in %q", s)
	}
	v.ports = append(v.ports, uint32(n))
	v.paths = append(v.paths, path)
	return nil
}

type listFlag []string

func (l *listFlag) String() string     { return "" }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "boxlite-vmm: "+format+"\n", args...)
	os.Exit(code)
}

func main() {
	var (
		libkrun   = flag.String("libkrun", "libkrun.so.1", "libkrun to dlopen (a bare name searches the loader path)")
		probe     = flag.Bool("probe", false, "load libkrun, print what was loaded (JSON) and exit")
		_         = flag.String("jail", "", "confine the VMM to DIR (see jail.c; required to start a VM)")
		_         = flag.Bool("allow-test-double", false, "accept the libkrun test double (tests only)")
		_         = flag.String("krunfw", "", "kernel library (libkrunfw.so.5) to load before libkrun (jail.c loads it)")
		cpus      = flag.Uint("cpus", 1, "vCPUs (1-254: libkrun's x86_64 MP table)")
		memory    = flag.Uint("memory-mib", 512, "guest memory in MiB")
		root      = flag.String("root", "", "guest root directory (virtio-fs)")
		workdir   = flag.String("workdir", "", "workload's working directory in the guest")
		console   = flag.String("console", "", "file that receives the guest console")
		_         = flag.Uint("log-level", 1, "libkrun log level (0 off .. 5 trace; jail.c sets it)")
		netTap    = flag.String("net-tap", "", "TAP device backing the guest's virtio-net eth0 (krun_add_net_tap)")
		netMAC    = flag.String("net-mac", "", "guest eth0's MAC address (with -net-tap)")
		noTSI     = flag.Bool("no-tsi", false, "never give the guest TSI (a kernel without libkrunfw's TSI patch)")
		vsock     vsockFlag
		connect   vsockFlag
		env       listFlag
		workloadV []string
	)
	flag.Var(&vsock, "vsock", "PORT:SOCKETPATH: host Unix socket bridged to guest vsock PORT (repeatable)")
	flag.Var(&connect, "vsock-connect", "PORT:SOCKETPATH: host Unix socket libkrun connects to when the guest connects to vsock PORT (repeatable)")
	flag.Var(&env, "env", "K=V for the workload (repeatable)")
	flag.Parse()
	workloadV = flag.Args()
	if *probe {
		os.Exit(probeLibkrun(*libkrun))
	}
	switch {
	case len(workloadV) == 0:
		fail(2, "no workload: give it after --")
	case *root == "":
		fail(2, "-root is required")
	case *cpus < 1 || *cpus > 254:
		fail(2, "-cpus %d: must be 1-254 (libkrun's x86_64 MP table holds at most 254)", *cpus)
	case *memory < 1 || *memory > 1<<32-1:
		fail(2, "-memory-mib %d: out of range", *memory)
	case (*netTap == "") != (*netMAC == ""):
		fail(2, "-net-tap and -net-mac go together")
	}
	var mac net.HardwareAddr
	if *netMAC != "" {
		var err error
		if mac, err = net.ParseMAC(*netMAC); err != nil || len(mac) != 6 {
			fail(2, "-net-mac %q: not an Ethernet address", *netMAC)
		}
	}

	// jail.c has loaded the kernel library and libkrun, refused the test
	// double unless allowed, created the context and confined the process.
	if C.boxlite_jail.active == 0 {
		fail(2, "-jail is required to start a VM")
	}
	h := C.boxlite_jail.libkrun
	sym := func(name string) unsafe.Pointer {
		f := C.lib_sym(h, C.CString(name))
		if f == nil {
			fail(3, "libkrun is not available: %s has no %s; install a libkrun (libkrun.so.1) that provides it", *libkrun, name)
		}
		return f
	}
	var (
		setVMConfig   = sym("krun_set_vm_config")
		setRoot       = sym("krun_set_root")
		setWorkdir    = sym("krun_set_workdir")
		setExec       = sym("krun_set_exec")
		addVsockPort2 = sym("krun_add_vsock_port2")
		setConsole    = sym("krun_set_console_output")
		startEnter    = sym("krun_start_enter")
	)
	check := func(name string, ret C.int32_t) C.int32_t {
		if ret < 0 {
			fail(5, "%s: %s", name, C.GoString(C.strerror(C.int(-ret))))
		}
		return ret
	}

	ctx := C.uint32_t(C.boxlite_jail.ctx)
	check("krun_set_vm_config", C.call_u_u8_u(setVMConfig, ctx, C.uint8_t(*cpus), C.uint32_t(*memory)))
	check("krun_set_root", C.call_u_s(setRoot, ctx, C.CString(*root)))
	if *workdir != "" {
		check("krun_set_workdir", C.call_u_s(setWorkdir, ctx, C.CString(*workdir)))
	}
	check("krun_set_exec", C.call_u_s_v_v(setExec, ctx, C.CString(workloadV[0]), cStrings(workloadV[1:]), cStrings(env)))
	if *noTSI {
		// Explicit vsock with no TSI feature: the ports below still work.
		// Order matters: krun_add_vsock is -EEXIST unless implicit vsock
		// was disabled first, and krun_add_vsock_port2 is -ENODEV after
		// krun_disable_implicit_vsock until krun_add_vsock.
		disable, add := C.lib_sym(h, C.CString("krun_disable_implicit_vsock")), C.lib_sym(h, C.CString("krun_add_vsock"))
		if disable == nil || add == nil {
			fail(3, "libkrun is not available for a kernel without TSI: %s has no krun_disable_implicit_vsock/krun_add_vsock; install libkrun 1.17 or newer", *libkrun)
		}
		check("krun_disable_implicit_vsock", C.call_u(disable, ctx))
		check("krun_add_vsock", C.call_u_u(add, ctx, 0))
	}
	for i, port := range vsock.ports {
		check("krun_add_vsock_port2", C.call_u_u_s_b(addVsockPort2, ctx, C.uint32_t(port), C.CString(vsock.paths[i]), C.bool(true)))
	}
	for i, port := range connect.ports {
		check("krun_add_vsock_port2", C.call_u_u_s_b(addVsockPort2, ctx, C.uint32_t(port), C.CString(connect.paths[i]), C.bool(false)))
	}
	if *console != "" {
		check("krun_set_console_output", C.call_u_s(setConsole, ctx, C.CString(*console)))
	}
	if *netTap != "" {
		addNetTap := C.lib_sym(h, C.CString("krun_add_net_tap"))
		if addNetTap == nil {
			fail(3, "libkrun is not available for pod networking: %s has no krun_add_net_tap; install a libkrun built with its network backends (NET=1)", *libkrun)
		}
		cmac := (*C.uint8_t)(C.CBytes(mac))
		check("krun_add_net_tap", C.call_net_tap(addNetTap, ctx, C.CString(*netTap), cmac))
	}
	// Never returns on success. The C strings above are never freed: libkrun
	// may keep pointers to them, and the process ends inside libkrun.
	// The shim times its start phases from this line (runtime/vmm Timing).
	fmt.Fprintf(os.Stderr, "boxlite-vmm: krun_start_enter at %d\n", time.Now().UnixNano())
	check("krun_start_enter", C.call_u(startEnter, ctx))
	fail(5, "krun_start_enter: returned without starting the VM")
}

// vmmFunctions are the libkrun functions main calls.
var vmmFunctions = []string{
	"krun_set_log_level", "krun_create_ctx", "krun_set_vm_config", "krun_set_root", "krun_set_workdir",
	"krun_set_exec", "krun_add_vsock_port2", "krun_set_console_output", "krun_start_enter",
}

// probeReport is what -probe prints.
type probeReport struct {
	// Requested is the -libkrun argument; Loaded the file the loader
	// opened, and File that file with symbolic links resolved, whose name
	// may carry the version (libkrun.so.1.x.y).
	Requested string `json:"requested"`
	Loaded    string `json:"loaded,omitempty"`
	File      string `json:"file,omitempty"`
	// Version is libkrun's version ("1.18.1"), or when VersionExact is
	// false the range its symbols give ("1.18.x", ">= 1.19.0");
	// VersionFrom says how it was told (krunver.c).
	Version      string `json:"version,omitempty"`
	VersionExact bool   `json:"version_exact"`
	VersionFrom  string `json:"version_from,omitempty"`
	// Supported is whether it runs the staged kernels (1.18.1 or newer);
	// Unsupported says why not, and what to do.
	Supported   bool   `json:"supported"`
	Unsupported string `json:"unsupported,omitempty"`
	// TestDouble is true for the libkrun test double, which boots no VM.
	TestDouble bool `json:"test_double"`
	// NetTap reports krun_add_net_tap, which pods' networking needs.
	NetTap  bool     `json:"net_tap"`
	Missing []string `json:"missing,omitempty"`
	Error   string   `json:"error,omitempty"`
}

func probeLibkrun(path string) int {
	rep := probeReport{Requested: path}
	code := 0
	defer func() {
		json.NewEncoder(os.Stdout).Encode(rep)
	}()
	h := C.lib_open(C.CString(path))
	if h == nil {
		rep.Error = C.GoString(C.lib_error())
		return 3
	}
	rep.Loaded = C.GoString(C.lib_path(h))
	var v C.struct_boxlite_krunver
	C.boxlite_krunver_detect(h, &v)
	rep.File = C.GoString(&v.file[0])
	rep.Version = C.GoString(&v.version[0])
	rep.VersionExact = v.exact != 0
	rep.VersionFrom = C.GoString(&v.detection[0])
	rep.Supported = v.supported != 0
	rep.Unsupported = C.GoString(&v.problem[0])
	rep.TestDouble = C.lib_sym(h, C.CString("krun_test_double")) != nil
	rep.NetTap = C.lib_sym(h, C.CString("krun_add_net_tap")) != nil
	for _, name := range vmmFunctions {
		if C.lib_sym(h, C.CString(name)) == nil {
			rep.Missing = append(rep.Missing, name)
			code = 3
		}
	}
	if code == 0 && !rep.Supported {
		code = 8
	}
	return code
}

// cStrings returns a NULL-terminated C array of C strings (never freed).
func cStrings(s []string) **C.char {
	arr := unsafe.Slice((**C.char)(C.malloc(C.size_t(len(s)+1)*C.size_t(unsafe.Sizeof((*C.char)(nil))))), len(s)+1)
	for i, v := range s {
		arr[i] = C.CString(v)
	}
	arr[len(s)] = nil
	return &arr[0]
}
