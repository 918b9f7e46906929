/*
 * libkrun-qemu (soname libkrun.so.1): the emulated engine. A second test
 * implementation of the part of libkrun's C API that boxlite-vmm uses, whose
 * krun_start_enter boots the configured VM under QEMU's software emulation
 * (qemu-system-x86_64 -accel tcg), the way libkrun boots it under KVM: the
 * kernel bytes that the staged libkrunfw.so.5 returns, a virtio-fs root, vsock
 * ports bridged to Unix sockets, the hvc0 console, virtio-net on a TAP, and
 * an init that behaves as libkrun's init.krun. It stands in for libkrun + KVM
 * where no guest can boot; it is never a product backend. See DESIGN.md
 * ("Testing where no guest can boot") and shared/QEMU-GUEST.md.
 *
 * Markers: it exports krun_test_double (so boxlite-vmm refuses it unless told
 * -allow-test-double, as the host double) and krun_test_engine_qemu (so the
 * shim can say "QEMU software emulation standing in for libkrun + KVM").
 * The call log and KRUN_DOUBLE_FAIL are the host double's
 * (test/libkrun-calllog/calllog.h), with the same calls and fields. Its
 * symbols are libkrun 1.19.0's, as the host double's by default (boxlite-vmm
 * tells the version from them): TSI and vsock follow libkrun 1.17+
 * (krun_disable_implicit_vsock, krun_add_vsock, -ENODEV for a port between
 * the two), and the calls the VMM does not make answer -ENOTSUP.
 *
 * Processes. boxlite-vmm confines itself right after krun_create_ctx
 * (pivot_root into its jail, 7 capabilities, no_new_privs). So, as the host
 * double does, krun_create_ctx (still unconfined) forks a launcher, which
 * unshare()s its mount namespace at once (the VMM's pivot_root then leaves it
 * with the host's view, to run QEMU and its helpers from) and keeps every
 * capability. It stays in the VMM's PID namespace and process group (so the
 * shim's group kill and the end of the PID namespace end it and all it
 * starts) and dies with the VMM (PR_SET_PDEATHSIG). krun_start_enter
 * (confined) sends it the configuration, the jail's root "/" and cwd as
 * O_PATH descriptors, and the console; through those descriptors the
 * launcher reaches every jail path as the VMM's mount namespace has it,
 * container root filesystems the shim mounts under the guest root later
 * included. The launcher then runs, beside this library (found with dladdr):
 *
 *   - virtiofsd (Debian 12's C virtiofsd, /usr/lib/qemu/virtiofsd) sharing
 *     the guest root as /proc/self/fd/3/. (the root's descriptor), tag
 *     "/dev/root" as libkrun's root (the kernel then needs no root=), with
 *     -o sandbox=chroot: chroot() may enter a directory of another mount
 *     namespace, and every lookup below it stays in that namespace, so
 *     virtiofsd serves the VMM's view. sandbox=namespace cannot: it
 *     bind-mounts the source in a mount namespace of its own, and the kernel
 *     refuses a bind of another namespace's directory (EINVAL; virtiofsd 7.2
 *     fails even earlier, ENOENT through the fresh /proc of its new PID
 *     namespace); sandbox=none would do, but leaves the server itself
 *     unconfined (its process root stays the host's);
 *   - vhost-device-vsock (Debian sid's, beside this library or on PATH),
 *     guest CID 3 as libkrun's, with its hybrid-vsock Unix socket; a thread of
 *     the launcher bridges each listen=true port: it binds the port's socket
 *     in the jail once the guest's init has started (libkrun binds when the
 *     guest activates its vsock device), and per connection connects to
 *     vhost-device-vsock, sends "CONNECT <port>\n", reads "OK <n>\n" and
 *     splices both ways; for a listen=false port it listens where
 *     vhost-device-vsock sends the guest's connections to that port and
 *     connects each to the port's path;
 *   - QEMU: microvm, TCG, a shared memfd RAM backend (vhost-user needs it),
 *     the boot stub (boot/: libkrun's vCPU and zero-page setup done in the
 *     guest), the kernel bytes in a memfd loaded at load_addr, the entry
 *     address handed to the stub, and libkrun's devices in libkrun's order:
 *     balloon, rng, console (hvc0, to the console file), virtio-fs root,
 *     vsock, virtio-net on each krun_add_net_tap TAP (in the VMM's network
 *     namespace, which the launcher shares);
 *   - the guest's /init.krun (init/): libkrun serves its init as a virtual
 *     file of the root virtio-fs, which virtiofsd cannot, so the launcher
 *     writes the static binary into the guest root through the jail's
 *     descriptor (O_EXCL, no links followed) and removes it as soon as it
 *     runs (the guest holds it open), or when the guest has ended (a group
 *     killed before init started leaves it in the guest root).
 *
 * When the guest ends, the launcher reports to the VMM, which _exit()s as
 * libkrun does: with the workload's status if init reported one (over the
 * virtio serial port krun-exit: libkrun's init uses an ioctl of libkrun's
 * virtio-fs), else 0 for a guest reset (a reboot, or a panic: panic=-1), else
 * 1 as for a vCPU failure (QEMU failed or died). Its sockets live in
 * <state dir>/qemu/ and go when it ends; nothing else is written outside the
 * jail.
 *
 * Timing (libkrun logs none): init writes "start <uptime>\n" on krun-exit
 * once its file systems are mounted (the guest's CLOCK_BOOTTIME, seconds;
 * a bare "start\n" is accepted too), and the launcher then writes one line
 * to its stderr, the VMM's log, with milliseconds since krun_start_enter:
 *
 *   libkrun-qemu: timing qemu_exec_ms=M kernel_entry_ms=K init_ms=I
 *
 * M: QEMU spawned; I: init's line read; K: I less the guest's uptime, the
 * kernel's entry as near as the guest's clock tells (its clock starts in the
 * kernel's first steps; absent for a bare "start"). make bench reads it
 * (test/bench, "guest boot under emulation"). TCG figures, not KVM's.
 *
 * Differences from libkrun, each forced by QEMU or the emulation:
 *   - the kernel command line is libkrun's (prolog, KRUN_* env, "K=V" env,
 *     devices, tsi_hijack without a net device, -- args; libkrun's limits:
 *     4096 entries, printable ASCII and 64 KiB, whose violation aborts as
 *     libkrun's panic does) except: the virtio_mmio.device= entries name
 *     QEMU's transports (512@0xfeb00000+512*t:5+t, t skipping 3, whose IRQ 8
 *     is the RTC's; microvm's own appending is off, as it appends after
 *     "--", where the kernel passes them to init), and "reboot=t" follows
 *     libkrun's "reboot=k" (microvm has no i8042, so a keyboard reset would
 *     not end the VM; a triple fault does, with -no-reboot), and
 *     "init_on_alloc=1" follows it: virtiofsd (and vhost-device-vsock)
 *     write guest memory from processes of their own, which TCG's
 *     self-modifying-code tracking does not see, so a page that held code
 *     TCG had translated, refilled by virtiofsd with another binary's text,
 *     kept its stale translations: processes in the guest died of SIGSEGV
 *     after a few execs (the page cache of a binary is refilled on open
 *     with virtiofsd's cache=auto), 6 runs in 6; with the guest kernel
 *     zeroing every page it allocates, a CPU write that drops the page's
 *     translations before virtiofsd fills it, none in 4 (up to 60 execs);
 *   - the guest's wall clock comes from microvm's CMOS RTC (no kvmclock
 *     under emulation), and its vCPUs take turns on one host thread
 *     (single-threaded TCG: multi-threaded TCG in QEMU 7.2 lets a vCPU trip
 *     on the kernel's live code patching);
 *   - TSI is not emulated: with TSI on (implicit vsock without a net
 *     device, or krun_add_vsock's features) the guest has loopback only
 *     (tsi_hijack is still on the command line, as libkrun puts it there);
 *   - a guest poweroff (no ACPI) halts the guest instead of ending the VM;
 *   - no DAX window for the root (QEMU 7.2's vhost-user-fs has none);
 *   - the console device has a second port, krun-exit; without
 *     krun_set_console_output the console goes to the VMM's stdout;
 *   - the TAP's offloads are QEMU's virtio-net properties set from the
 *     features, and NET_FLAG_DHCP_CLIENT is refused (-EINVAL, as libkrun
 *     1.15-1.17 do): this init has no DHCP client;
 *   - a missing libkrunfw.so.5 fails krun_start_enter with -ENOENT, as in
 *     libkrun, but the kernel bytes are taken in krun_create_ctx;
 *   - the VM is five processes of the VMM's group (the VMM, the launcher,
 *     QEMU, virtiofsd, vhost-device-vsock), not one: guest RAM is QEMU's,
 *     not the VMM's; and the launcher keeps a copy of the host's mount
 *     namespace as it was at krun_create_ctx for the VM's lifetime;
 *   - at most MAXNETS TAPs (microvm's transports), and the guest's CPU is
 *     QEMU's "max" model, not the host's.
 * An unknown context is -ENOENT, as in libkrun (the host double says -EINVAL).
 *
 * Build (make testbins, or build.sh): cc -shared -fPIC -Wl,-soname,libkrun.so.1
 * -o libkrun.so.1 libkrun_qemu.c -ldl -pthread, plus bootstub and init.krun.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <linux/openat2.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../libkrun-calllog/calllog.h"

extern char **environ;

#define MAXCTX 8
#define MAXPORTS 16
#define MAXNETS 2            /* 7 usable transports (mmio_transport); 5 go to the other devices */
#define MAX_ARGS 4096        /* libkrun's MAX_ARGS */
#define CMDLINE_MAX 0x10000  /* libkrun's CMDLINE_MAX_SIZE (x86_64), NUL included */
#define MAX_VCPUS 254        /* libkrun's mptable MAX_SUPPORTED_CPUS */
#define ENTRY_HANDOFF 0x140000 /* boot/entry.S */
#define MSG_MAX (256 * 1024)

#define DEFAULT_KERNEL_CMDLINE "reboot=k panic=-1 panic_print=0 nomodule console=hvc0 rootfstype=virtiofs rw quiet no-kvmapf"
#define INIT_PATH "/init.krun"

/* libkrun.h */
#define NET_FEATURE_CSUM (1u << 0)
#define NET_FEATURE_GUEST_CSUM (1u << 1)
#define NET_FEATURE_GUEST_TSO4 (1u << 7)
#define NET_FEATURE_GUEST_TSO6 (1u << 8)
#define NET_FEATURE_GUEST_UFO (1u << 10)
#define NET_FEATURE_HOST_TSO4 (1u << 11)
#define NET_FEATURE_HOST_TSO6 (1u << 12)
#define NET_FEATURE_HOST_UFO (1u << 14)
#define NET_ALL_FEATURES (NET_FEATURE_CSUM | NET_FEATURE_GUEST_CSUM | NET_FEATURE_GUEST_TSO4 | NET_FEATURE_GUEST_TSO6 | \
			  NET_FEATURE_GUEST_UFO | NET_FEATURE_HOST_TSO4 | NET_FEATURE_HOST_TSO6 | NET_FEATURE_HOST_UFO)

static const char *const children_env[] = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", NULL };

/* libkrun 1.17's VsockConfig, as the host double models it: implicit (TSI
 * when there is no network device), disabled, or explicit with TSI features
 * (KRUN_TSI_HIJACK_*). TSI itself is not emulated (see the header). */
enum vsock_mode { VSOCK_IMPLICIT, VSOCK_DISABLED, VSOCK_EXPLICIT };
#define KRUN_TSI_HIJACK_INET (1u << 0)
#define KRUN_TSI_HIJACK_UNIX (1u << 1)

struct port { uint32_t port; char *path; bool listen; };
struct nic { char *tap; uint8_t mac[6]; uint32_t features; };
struct ctx {
	uint8_t vcpus;
	uint32_t ram_mib;
	char *root, *workdir, *exec, *console;
	char **argv, **envp; /* envp NULL = the VMM's environment, as libkrun */
	struct port ports[MAXPORTS];
	int nports;
	struct nic nics[MAXNETS];
	int nnics;
	enum vsock_mode vsock;
	uint32_t tsi_features; /* VSOCK_EXPLICIT's */
};
static struct ctx *ctxs[MAXCTX];

/* The kernel, as krunfw_get_kernel returned it (krun_create_ctx). */
static void *krunfw;
static const char *kernel;
static size_t kernel_load, kernel_entry, kernel_size;
static bool krunfw_tsi; /* the kernel has libkrunfw's TSI patch */

/* The name of libkrunfw's TSI boot parameter as the kernel stores it (see
 * package kernel, tsiMarker): present = the kernel consumes the word. */
static const char tsi_marker[] = "\0tsi_hijack";

static int launcher_sock = -1;
static pid_t launcher_pid = -1, vmm_pid;
static char engine_dir[PATH_MAX - 256]; /* room for a file name after it */
static uint32_t log_level;

int krun_test_double(void) { return 1; }
int krun_test_engine_qemu(void) { return 1; }

static void warnx_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warnx_(const char *fmt, ...)
{
	char b[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(b, sizeof b, fmt, ap);
	va_end(ap);
	fprintf(stderr, "libkrun-qemu: %s\n", b);
}

/* UTF-8 validity, which libkrun's CStr::to_str checks. */
static bool utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		int n = *p < 0x80 ? 0 : (*p & 0xe0) == 0xc0 ? 1 : (*p & 0xf0) == 0xe0 ? 2 : (*p & 0xf8) == 0xf0 ? 3 : -1;
		if (n < 0 || (n == 1 && *p < 0xc2) || (n == 3 && *p > 0xf4)) return false;
		uint32_t cp = n ? *p & (0x3f >> n) : *p;
		p++;
		for (int i = 0; i < n; i++, p++) {
			if ((*p & 0xc0) != 0x80) return false;
			cp = cp << 6 | (*p & 0x3f);
		}
		if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff))) return false;
	}
	return true;
}

/* The ctx for id or NULL (and *ret = -ENOENT, as libkrun); also applies KRUN_DOUBLE_FAIL. */
static struct ctx *get(struct jl *j, uint32_t id, const char *call, int32_t *ret)
{
	jl_uint(j, "ctx", id);
	*ret = (id < MAXCTX && ctxs[id]) ? inject(j, call) : -ENOENT;
	return *ret ? NULL : ctxs[id];
}

int32_t krun_set_log_level(uint32_t level)
{
	struct jl j; jl_begin(&j, "krun_set_log_level"); jl_uint(&j, "level", level);
	log_level = level;
	return jl_done(&j, inject(&j, "krun_set_log_level"));
}

typedef char *(*get_kernel_fn)(size_t *, size_t *, size_t *);
typedef int (*get_version_fn)(void);

/* Loads libkrunfw.so.5 once per process, by soname, as libkrun does, and
 * takes its kernel. A failure is logged; krun_start_enter reports it. */
static void load_krunfw(void)
{
	if (krunfw) return;
	struct jl j; jl_begin(&j, "krunfw_load"); jl_str(&j, "soname", "libkrunfw.so.5");
	void *h = dlopen("libkrunfw.so.5", RTLD_NOW);
	if (!h) {
		const char *e = dlerror();
		jl_str(&j, "error", e);
		jl_done(&j, -ENOENT);
		return;
	}
	get_kernel_fn gk = (get_kernel_fn)dlsym(h, "krunfw_get_kernel");
	get_version_fn gv = (get_version_fn)dlsym(h, "krunfw_get_version");
	struct link_map *lm = NULL;
	char real[PATH_MAX];
	if (dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm) {
		jl_str(&j, "path", lm->l_name);
		jl_str(&j, "realpath", realpath(lm->l_name, real) ? real : NULL);
	}
	size_t load = 0, entry = 0, size = 0;
	char *k = gk ? gk(&load, &entry, &size) : NULL;
	if (!k || !size) {
		jl_str(&j, "error", "no kernel from krunfw_get_kernel");
		dlclose(h);
		jl_done(&j, -ENOENT);
		return;
	}
	/* sizeof tsi_marker counts the terminating NUL: "\0tsi_hijack\0". */
	krunfw_tsi = memmem(k, size, tsi_marker, sizeof tsi_marker) != NULL;
	if (gv) jl_int(&j, "version", gv());
	jl_uint(&j, "load_addr", load);
	jl_uint(&j, "entry_addr", entry);
	jl_uint(&j, "size", size);
	jl_bool(&j, "tsi_patch", krunfw_tsi);
	krunfw = h; /* never closed: stays mapped for the VMM's lifetime */
	kernel = k, kernel_load = load, kernel_entry = entry, kernel_size = size;
	jl_done(&j, 0);
}

static int32_t fork_launcher(void);

int32_t krun_create_ctx(void)
{
	struct jl j; jl_begin(&j, "krun_create_ctx");
	int32_t ret = inject(&j, "krun_create_ctx");
	if (!ret) load_krunfw();
	if (!ret) ret = fork_launcher();
	for (int i = 0; !ret && i <= MAXCTX; i++) {
		if (i == MAXCTX) ret = -ENOMEM;
		else if (!ctxs[i]) {
			ctxs[i] = xrealloc(NULL, sizeof(struct ctx));
			memset(ctxs[i], 0, sizeof(struct ctx));
			ctxs[i]->vcpus = 1, ctxs[i]->ram_mib = 128; /* libkrun's VmConfig defaults */
			ret = i;
			break;
		}
	}
	return jl_done(&j, ret);
}

static void ctx_free(struct ctx *c)
{
	free(c->root); free(c->workdir); free(c->exec); free(c->console);
	strv_free(c->argv); strv_free(c->envp);
	for (int i = 0; i < c->nports; i++) free(c->ports[i].path);
	for (int i = 0; i < c->nnics; i++) free(c->nics[i].tap);
	free(c);
}

int32_t krun_free_ctx(uint32_t id)
{
	struct jl j; jl_begin(&j, "krun_free_ctx");
	int32_t ret;
	struct ctx *c = get(&j, id, "krun_free_ctx", &ret);
	if (c) { ctx_free(c); ctxs[id] = NULL; }
	return jl_done(&j, ret);
}

int32_t krun_set_vm_config(uint32_t id, uint8_t vcpus, uint32_t ram_mib)
{
	struct jl j; jl_begin(&j, "krun_set_vm_config");
	int32_t ret;
	struct ctx *c = get(&j, id, "krun_set_vm_config", &ret);
	jl_uint(&j, "vcpus", vcpus); jl_uint(&j, "ram_mib", ram_mib);
	if (c && (vcpus == 0 || ram_mib == 0)) ret = -EINVAL;
	else if (c) c->vcpus = vcpus, c->ram_mib = ram_mib;
	return jl_done(&j, ret);
}

/* Shared body of the calls that set one path. */
static int32_t set_path(const char *call, uint32_t id, const char *key, const char *v, size_t field, bool once)
{
	struct jl j; jl_begin(&j, call);
	int32_t ret;
	struct ctx *c = get(&j, id, call, &ret);
	jl_str(&j, key, v);
	char **f = c ? (char **)((char *)c + field) : NULL;
	if (c && (!v || !utf8(v) || (once && *f))) ret = -EINVAL;
	else if (c) { free(*f); *f = xstrdup(v); }
	return jl_done(&j, ret);
}
int32_t krun_set_root(uint32_t id, const char *root) { return set_path("krun_set_root", id, "root", root, offsetof(struct ctx, root), false); }
int32_t krun_set_workdir(uint32_t id, const char *wd) { return set_path("krun_set_workdir", id, "workdir", wd, offsetof(struct ctx, workdir), false); }
/* libkrun refuses a second console file. */
int32_t krun_set_console_output(uint32_t id, const char *f) { return set_path("krun_set_console_output", id, "filepath", f, offsetof(struct ctx, console), true); }

/* A copy of at most MAX_ARGS entries of v (libkrun drops the rest); false
 * when one is not UTF-8. */
static bool args_dup(const char *const *v, char ***out)
{
	size_t n = 0;
	while (v && n < MAX_ARGS && v[n]) n++;
	char **o = xrealloc(NULL, (n + 1) * sizeof(*o));
	for (size_t i = 0; i < n; i++) {
		if (!utf8(v[i])) { o[i] = NULL; strv_free(o); return false; }
		o[i] = xstrdup(v[i]);
	}
	o[n] = NULL;
	*out = o;
	return true;
}

/* argv excludes the program name, as in libkrun. */
int32_t krun_set_exec(uint32_t id, const char *exec_path, const char *const argv[], const char *const envp[])
{
	struct jl j; jl_begin(&j, "krun_set_exec");
	int32_t ret;
	struct ctx *c = get(&j, id, "krun_set_exec", &ret);
	jl_str(&j, "exec_path", exec_path); jl_strv(&j, "argv", argv); jl_strv(&j, "envp", envp);
	char **a = NULL, **e = NULL;
	if (c && (!exec_path || !utf8(exec_path) || !args_dup(argv, &a) || (envp && !args_dup(envp, &e)))) {
		strv_free(a);
		ret = -EINVAL;
	} else if (c) {
		free(c->exec); strv_free(c->argv); strv_free(c->envp);
		c->exec = xstrdup(exec_path);
		c->argv = a;
		c->envp = e;
	}
	return jl_done(&j, ret);
}

int32_t krun_add_vsock_port2(uint32_t id, uint32_t port, const char *filepath, bool listen)
{
	struct jl j; jl_begin(&j, "krun_add_vsock_port2");
	int32_t ret;
	struct ctx *c = get(&j, id, "krun_add_vsock_port2", &ret);
	jl_uint(&j, "port", port); jl_str(&j, "filepath", filepath); jl_bool(&j, "listen", listen);
	struct stat st;
	if (c && (!filepath || !utf8(filepath) || c->nports == MAXPORTS)) ret = -EINVAL;
	/* As libkrun 1.17+: no vsock device after krun_disable_implicit_vsock
	 * until krun_add_vsock. */
	else if (c && c->vsock == VSOCK_DISABLED) ret = -ENODEV;
	/* As libkrun: a listening port's path must not exist yet, in the
	 * caller's view, now; it is never unlinked. */
	else if (c && listen && stat(filepath, &st) == 0) ret = -EEXIST;
	else if (c && listen && errno != ENOENT) ret = -EINVAL;
	else if (c) c->ports[c->nports++] = (struct port){ port, xstrdup(filepath), listen };
	return jl_done(&j, ret);
}

int32_t krun_disable_implicit_vsock(uint32_t id)
{
	struct jl j; jl_begin(&j, "krun_disable_implicit_vsock");
	int32_t ret;
	struct ctx *c = get(&j, id, "krun_disable_implicit_vsock", &ret);
	if (c) c->vsock = VSOCK_DISABLED;
	return jl_done(&j, ret);
}

int32_t krun_add_vsock(uint32_t id, uint32_t tsi_features)
{
	struct jl j; jl_begin(&j, "krun_add_vsock");
	int32_t ret;
	struct ctx *c = get(&j, id, "krun_add_vsock", &ret);
	jl_uint(&j, "tsi_features", tsi_features);
	if (c && tsi_features & ~(KRUN_TSI_HIJACK_INET | KRUN_TSI_HIJACK_UNIX)) ret = -EINVAL;
	else if (c && c->vsock != VSOCK_DISABLED) ret = -EEXIST; /* only after krun_disable_implicit_vsock */
	else if (c) { c->vsock = VSOCK_EXPLICIT; c->tsi_features = tsi_features; }
	return jl_done(&j, ret);
}

/* Calls of libkrun 1.16-1.19 that the VMM does not make: recorded and
 * answered -ENOTSUP, as the host double answers them. They exist so that
 * the engine's symbols are those of the release it stands for (1.19.0:
 * boxlite-vmm tells libkrun's version from them and refuses one older than
 * 1.18.1). */
static int32_t unmodelled(const char *call, uint32_t id)
{
	struct jl j; jl_begin(&j, call); jl_uint(&j, "ctx", id);
	return jl_done(&j, -ENOTSUP);
}
int32_t krun_get_max_vcpus(void) { return unmodelled("krun_get_max_vcpus", 0); }
int32_t krun_disable_implicit_console(uint32_t id) { return unmodelled("krun_disable_implicit_console", id); }
/* KRUN_FEATURE_NET (0): the engine has krun_add_net_tap; 1-11 are not
 * there, later ones -EINVAL, as libkrun 1.19 answers them. */
int32_t krun_has_feature(uint64_t feature)
{
	struct jl j; jl_begin(&j, "krun_has_feature"); jl_uint(&j, "feature", feature);
	int32_t ret = feature == 0 ? 1 : feature > 11 ? -EINVAL : 0;
	return jl_done(&j, ret);
}
int32_t krun_add_virtiofs3(uint32_t id, const char *tag, const char *path, uint64_t shm, bool ro)
{
	(void)tag; (void)path; (void)shm; (void)ro;
	return unmodelled("krun_add_virtiofs3", id);
}
int32_t krun_disable_implicit_init(uint32_t id) { return unmodelled("krun_disable_implicit_init", id); }
int32_t krun_get_default_init(uint8_t **buf, size_t *len) { (void)buf; (void)len; return unmodelled("krun_get_default_init", 0); }
int32_t krun_fs_add_overlay_dir(uint32_t id, const char *fs, const char *path) { (void)fs; (void)path; return unmodelled("krun_fs_add_overlay_dir", id); }
int32_t krun_fs_add_overlay_file(uint32_t id, const char *fs, const char *path, const char *src) { (void)fs; (void)path; (void)src; return unmodelled("krun_fs_add_overlay_file", id); }

int32_t krun_add_net_tap(uint32_t id, char *name, uint8_t *const mac, uint32_t features, uint32_t flags)
{
	struct jl j; jl_begin(&j, "krun_add_net_tap");
	int32_t ret;
	struct ctx *c = get(&j, id, "krun_add_net_tap", &ret);
	char m[18] = "";
	if (mac) snprintf(m, sizeof m, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
	jl_str(&j, "tap_name", name); jl_str(&j, "mac", mac ? m : NULL); jl_uint(&j, "features", features); jl_uint(&j, "flags", flags);
	if (c && (!name || !*name || !utf8(name) || strlen(name) >= IFNAMSIZ || strchr(name, ',') || !mac)) ret = -EINVAL;
	else if (c && ((features & ~NET_ALL_FEATURES) ||
		       ((features & (NET_FEATURE_GUEST_TSO4 | NET_FEATURE_GUEST_TSO6 | NET_FEATURE_GUEST_UFO)) && !(features & NET_FEATURE_GUEST_CSUM))))
		ret = -EINVAL;
	else if (c && flags) ret = -EINVAL; /* no DHCP client in this init */
	else if (c && c->nnics == MAXNETS) ret = -ENOSPC;
	else if (c) {
		struct nic *n = &c->nics[c->nnics++];
		n->tap = xstrdup(name);
		memcpy(n->mac, mac, 6);
		n->features = features;
	}
	return jl_done(&j, ret);
}

/* microvm's virtio-mmio transport for the i-th device: transport t sits at
 * 0xfeb00000 + 512 t on IRQ 5 + t, and the one on IRQ 8 (t = 3) is skipped,
 * as microvm's RTC has that IRQ (the guest's wall clock under emulation: no
 * kvmclock). */
static int mmio_transport(int i) { return i < 3 ? i : i + 1; }

/* ---- the kernel command line, as libkrun's build_microvm makes it ---- */

struct cmdline { char b[CMDLINE_MAX]; size_t n; };

/* libkrun's Cmdline::insert_str: printable ASCII only, a space between
 * inserts, and room for the NUL. */
static const char *cmdline_insert(struct cmdline *c, const char *s)
{
	for (const char *p = s; *p; p++)
		if (*p < ' ' || *p > '~') return "InvalidAscii";
	size_t n = strlen(s), sp = c->n ? 1 : 0;
	if (c->n + n + sp >= CMDLINE_MAX) return "TooLarge";
	if (sp) c->b[c->n++] = ' ';
	memcpy(c->b + c->n, s, n + 1);
	c->n += n;
	return NULL;
}

/* libkrun's collapse_str_array: each item quoted, joined with spaces. */
static void collapse(struct jl *out, char *const *v)
{
	for (size_t i = 0; v && v[i]; i++) {
		if (i) jl_s(out, " ");
		jl_s(out, "\""); jl_s(out, v[i]); jl_s(out, "\"");
	}
}

/* libkrun unwraps these inserts: a failure is a Rust panic out of an
 * extern "C" function, which aborts the process (logged first, as
 * krun_start_enter's line with "panic" and no "ret"). */
static struct jl *start_line;
static void must(const char *err, const char *where)
{
	if (!err) return;
	char msg[256];
	snprintf(msg, sizeof msg, "panicked at %s: called `Result::unwrap()` on an `Err` value: %s", where, err);
	warnx_("%s (as libkrun does)", msg);
	if (start_line) { jl_str(start_line, "panic", msg); jl_write(start_line); }
	abort();
}

/* TSI as libkrun 1.17+ decides it (VsockConfig): implicit = on for AF_INET
 * without a network device; disabled = off; explicit = its features. */
static void tsi_of(const struct ctx *c, bool *inet, bool *unix_)
{
	*inet = c->vsock == VSOCK_IMPLICIT ? c->nnics == 0 : c->vsock == VSOCK_EXPLICIT && (c->tsi_features & KRUN_TSI_HIJACK_INET);
	*unix_ = c->vsock == VSOCK_EXPLICIT && (c->tsi_features & KRUN_TSI_HIJACK_UNIX);
}

/* Whether the VM gets a vsock device: an explicit one, or the implicit one
 * (for TSI, without a network device, or for the ports). */
static bool has_vsock(const struct ctx *c)
{
	return c->vsock == VSOCK_EXPLICIT || (c->vsock == VSOCK_IMPLICIT && (c->nnics == 0 || c->nports));
}

/* Builds the command line; false (with *why) for the errors libkrun returns. */
static bool build_cmdline(struct ctx *c, int ntransports, struct cmdline *cl, const char **why)
{
	cl->n = 0;
	cl->b[0] = 0;
	must(cmdline_insert(cl, DEFAULT_KERNEL_CMDLINE " init=" INIT_PATH), "builder.rs (prolog)");
	/* krun_env: " {KRUN_INIT=} {KRUN_WORKDIR=} {block root} {KRUN_RLIMITS=} {env}" */
	struct jl e = { 0 };
	jl_s(&e, " ");
	if (c->exec) { jl_s(&e, "KRUN_INIT="); jl_s(&e, c->exec); }
	jl_s(&e, " ");
	if (c->workdir) { jl_s(&e, "KRUN_WORKDIR="); jl_s(&e, c->workdir); }
	jl_s(&e, "   ");
	if (c->envp) collapse(&e, c->envp);
	else for (char **v = environ; *v; v++) {
		const char *eq = strchr(*v, '=');
		if (!eq) continue;
		jl_s(&e, " "); jl_raw(&e, *v, (size_t)(eq - *v)); jl_s(&e, "=\""); jl_s(&e, eq + 1); jl_s(&e, "\"");
	}
	must(cmdline_insert(cl, e.b), "builder.rs (krun_env)");
	free(e.b);
	for (int i = 0; i < ntransports; i++) {
		char d[64];
		int t = mmio_transport(i);
		snprintf(d, sizeof d, "virtio_mmio.device=512@0x%x:%d", 0xfeb00000u + 512u * (unsigned)t, 5 + t);
		if ((*why = cmdline_insert(cl, d))) return false;
	}
	bool tsi_inet, tsi_unix;
	tsi_of(c, &tsi_inet, &tsi_unix);
	if (tsi_inet && (*why = cmdline_insert(cl, "tsi_hijack"))) return false;
	if (tsi_unix && (*why = cmdline_insert(cl, "tsi_hijack_unix"))) return false;
	if ((*why = cmdline_insert(cl, "reboot=t init_on_alloc=1"))) return false;
	struct jl a = { 0 };
	jl_s(&a, " -- ");
	collapse(&a, c->argv);
	must(cmdline_insert(cl, a.b), "builder.rs (epilog)");
	free(a.b);
	return true;
}

/* ---- messages between the VMM and its launcher ---- */

/* krun_start_enter's message: this header, then NUL-terminated strings:
 * root, the command line, each port's path, each TAP's name; fds: the
 * jail's root, the VMM's cwd, the console. Paths are absolute, in the jail. */
struct start_msg {
	uint32_t vcpus, ram_mib, nports, nnics, ntransports, vsock;
	uint32_t log_level;
	int64_t enter_ns; /* CLOCK_MONOTONIC at krun_start_enter, for the timing line */
	struct { uint32_t port, listen; } ports[MAXPORTS];
	struct { uint8_t mac[6]; uint32_t features; } nics[MAXNETS];
};
/* The launcher's answers: first whether the VM started, then how it ended. */
struct started_msg { int32_t ret, qemu_pid; };
struct ended_msg { int32_t code, reported, started, qemu_status; };

static int send_fds(int sock, const void *buf, size_t n, const int *fds, int nfds)
{
	union { struct cmsghdr h; char b[CMSG_SPACE(8 * sizeof(int))]; } u;
	memset(&u, 0, sizeof u);
	struct iovec iov = { (void *)buf, n };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (nfds) {
		msg.msg_control = u.b;
		msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
		struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET; cm->cmsg_type = SCM_RIGHTS; cm->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, (size_t)nfds * sizeof(int));
	}
	return sendmsg(sock, &msg, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

static ssize_t recv_all(int sock, void *buf, size_t n)
{
	ssize_t r;
	while ((r = recv(sock, buf, n, 0)) < 0 && errno == EINTR) {}
	return r;
}

/* ---- the launcher (the child krun_create_ctx forks) ---- */

static void launcher_main(int sock) __attribute__((noreturn));

static int32_t fork_launcher(void)
{
	if (launcher_sock >= 0) return 0;
	Dl_info di;
	if (dladdr((void *)fork_launcher, &di) && di.dli_fname) {
		char *p = realpath(di.dli_fname, NULL);
		if (p) {
			char *slash = strrchr(p, '/');
			if (slash) *slash = 0;
			snprintf(engine_dir, sizeof engine_dir, "%s", p);
			free(p);
		}
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) return -errno;
	vmm_pid = getpid();
	pid_t pid = fork();
	if (pid < 0) { int e = errno; close(sv[0]); close(sv[1]); return -e; }
	if (pid == 0) { close(sv[0]); launcher_main(sv[1]); }
	close(sv[1]);
	/* The launcher has its own mount namespace before the VMM pivots. */
	int32_t st = -EIO;
	if (recv_all(sv[0], &st, sizeof st) != sizeof st || st < 0) {
		kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
		close(sv[0]);
		return st < 0 ? st : -EIO;
	}
	launcher_sock = sv[0];
	launcher_pid = pid;
	return 0;
}

/* What the launcher was sent and made. */
struct vm {
	struct start_msg h;
	char *root, *cmdline;
	char *port_path[MAXPORTS];
	char *tap[MAXNETS];
	int jail, cwd, console;     /* from the VMM */
	int rootfd, qdir;           /* the guest root; <cwd>/qemu */
	dev_t init_dev; ino_t init_ino; bool init_placed;
	pid_t virtiofsd, vsockd, qemu;
	int64_t qemu_exec_ns;       /* CLOCK_MONOTONIC when QEMU was spawned */
};

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Opens path (absolute, in the jail) as the VMM sees it: beneath the jail's
 * root, links resolved as if it were "/". */
static int jail_open(struct vm *vm, const char *path, int flags)
{
	struct open_how how = { .flags = (uint64_t)flags | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT };
	const char *rel = path;
	while (*rel == '/') rel++;
	return (int)syscall(SYS_openat2, vm->jail, *rel ? rel : ".", &how, sizeof how);
}

/* A sockaddr for path (in the jail) through an O_PATH fd of its directory,
 * returned in *dirfd (the caller closes it). */
static int jail_sockaddr(struct vm *vm, const char *path, struct sockaddr_un *sa, int *dirfd)
{
	char dir[PATH_MAX];
	const char *base = strrchr(path, '/');
	if (!base || !base[1]) return -EINVAL;
	snprintf(dir, sizeof dir, "%.*s", (int)(base - path), path);
	if ((*dirfd = jail_open(vm, *dir ? dir : "/", O_PATH | O_DIRECTORY)) < 0) return -errno;
	memset(sa, 0, sizeof *sa);
	sa->sun_family = AF_UNIX;
	if ((size_t)snprintf(sa->sun_path, sizeof sa->sun_path, "/proc/self/fd/%d/%s", *dirfd, base + 1) >= sizeof sa->sun_path) {
		close(*dirfd);
		return -ENAMETOOLONG;
	}
	return 0;
}

/* The path of the named helper: beside this library, else on PATH. */
static char *find_prog(const char *name, const char *const *also)
{
	char p[PATH_MAX];
	snprintf(p, sizeof p, "%s/%s", engine_dir, name);
	if (*engine_dir && access(p, X_OK) == 0) return xstrdup(p);
	for (int i = 0; also && also[i]; i++)
		if (access(also[i], X_OK) == 0) return xstrdup(also[i]);
	const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	for (const char *d = path; *d; d += strcspn(d, ":"), d += (*d == ':')) {
		snprintf(p, sizeof p, "%.*s/%s", (int)strcspn(d, ":"), d, name);
		if (access(p, X_OK) == 0) return xstrdup(p);
	}
	return NULL;
}

/* Forks and execs argv with fds[i] as fd 3+i and the children's
 * environment; only async-signal-safe calls in the child. */
static pid_t spawn(char *const argv[], const int *fds, int nfds)
{
	pid_t pid = fork();
	if (pid != 0) return pid;
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	int tmp[8];
	for (int i = 0; i < nfds; i++)
		if ((tmp[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3 + nfds)) < 0) _exit(127);
	for (int i = 0; i < nfds; i++)
		if (dup2(tmp[i], 3 + i) < 0) _exit(127); /* dup2 clears FD_CLOEXEC */
	execve(argv[0], argv, (char *const *)children_env);
	(void)!write(2, "libkrun-qemu: exec failed: ", 27);
	(void)!write(2, argv[0], strlen(argv[0]));
	(void)!write(2, "\n", 1);
	_exit(127);
}

/* Waits until the socket name exists in the qemu directory, or its maker
 * pid has exited, or 10 s have passed. */
static int wait_socket(struct vm *vm, const char *name, pid_t pid, const char *what)
{
	for (int i = 0; i < 2000; i++) {
		struct stat st;
		if (fstatat(vm->qdir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISSOCK(st.st_mode)) return 0;
		int ws;
		if (waitpid(pid, &ws, WNOHANG) == pid) {
			warnx_("%s exited (wait status %#x) before making its socket %s", what, ws, name);
			if (pid == vm->virtiofsd) vm->virtiofsd = -1;
			if (pid == vm->vsockd) vm->vsockd = -1;
			return -EIO;
		}
		nanosleep(&(struct timespec){ 0, 5 * 1000 * 1000 }, NULL);
	}
	warnx_("%s made no socket %s in 10s", what, name);
	return -ETIMEDOUT;
}

/* Writes the engine's init into the guest root as init.krun: a new file
 * (O_EXCL), beneath the root, no link followed. */
static int place_init(struct vm *vm)
{
	char src[PATH_MAX];
	snprintf(src, sizeof src, "%s/init.krun", engine_dir);
	int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0) { warnx_("the engine's init %s: %s", src, strerror(errno)); return -ENOENT; }
	struct open_how how = { .flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, .mode = 0755,
				.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS };
	int out = (int)syscall(SYS_openat2, vm->rootfd, "init.krun", &how, sizeof how);
	if (out < 0) {
		int e = errno;
		warnx_("placing the guest's init at %s/init.krun: %s", vm->root, strerror(e));
		close(in);
		return -e;
	}
	char buf[65536];
	ssize_t n;
	int ret = 0;
	while ((n = read(in, buf, sizeof buf)) > 0)
		if (write(out, buf, (size_t)n) != n) { ret = -errno; break; }
	if (n < 0) ret = -errno;
	struct stat st;
	if (!ret && (fchmod(out, 0755) || fstat(out, &st))) ret = -errno;
	if (!ret) vm->init_dev = st.st_dev, vm->init_ino = st.st_ino, vm->init_placed = true;
	close(in);
	close(out);
	if (ret) warnx_("writing the guest's init at %s/init.krun: %s", vm->root, strerror(-ret));
	return ret;
}

/* Removes init.krun if it is still the file place_init made. */
static void remove_init(struct vm *vm)
{
	struct stat st;
	if (vm->init_placed && fstatat(vm->rootfd, "init.krun", &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    st.st_dev == vm->init_dev && st.st_ino == vm->init_ino)
		unlinkat(vm->rootfd, "init.krun", 0);
}

/* ---- vsock bridges ---- */

struct pipe_end { int from, to; int *refs; };

/* One direction of a bridged connection; the last to finish closes both. */
static void *copy_dir(void *arg)
{
	struct pipe_end *p = arg;
	char *buf = xrealloc(NULL, 65536);
	for (;;) {
		ssize_t n = read(p->from, buf, 65536);
		if (n < 0 && errno == EINTR) continue;
		if (n <= 0) break;
		ssize_t off = 0;
		while (off < n) {
			ssize_t w = send(p->to, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
			if (w < 0 && errno == EINTR) continue;
			if (w <= 0) goto out;
			off += w;
		}
	}
out:
	shutdown(p->to, SHUT_WR);
	free(buf);
	if (__atomic_sub_fetch(p->refs, 1, __ATOMIC_SEQ_CST) == 0) {
		close(p->from);
		close(p->to);
		free(p->refs);
	}
	free(p);
	return NULL;
}

/* Splices a and b both ways on two threads. */
static void splice_both(int a, int b)
{
	int *refs = xrealloc(NULL, sizeof *refs);
	*refs = 2;
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	for (int i = 0; i < 2; i++) {
		struct pipe_end *p = xrealloc(NULL, sizeof *p);
		*p = (struct pipe_end){ i ? b : a, i ? a : b, refs };
		pthread_t th;
		if (pthread_create(&th, &at, copy_dir, p)) {
			free(p);
			if (__atomic_sub_fetch(refs, 1, __ATOMIC_SEQ_CST) == 0) { close(a); close(b); free(refs); }
			else shutdown(i ? a : b, SHUT_RDWR); /* ends the other direction */
		}
	}
	pthread_attr_destroy(&at);
}

struct conn { struct vm *vm; int fd, idx; };

/* A host connection to a listen=true port: the hybrid vsock handshake with
 * vhost-device-vsock, then the stream is the guest's port. */
static void *host_conn(void *arg)
{
	struct conn *k = arg;
	int c = k->fd;
	uint32_t port = k->vm->h.ports[k->idx].port;
	free(k);
	int u = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX, .sun_path = "vsock" };
	char line[64];
	size_t n = 0;
	if (u < 0 || connect(u, (struct sockaddr *)&sa, sizeof sa) < 0) goto fail;
	int l = snprintf(line, sizeof line, "CONNECT %u\n", port);
	if (send(u, line, (size_t)l, MSG_NOSIGNAL) != l) goto fail;
	while (n < sizeof line - 1) { /* "OK <n>\n", byte by byte: what follows is the guest's */
		ssize_t r = read(u, line + n, 1);
		if (r < 0 && errno == EINTR) continue;
		if (r <= 0) goto fail;
		if (line[n++] == '\n') break;
	}
	line[n] = 0;
	if (strncmp(line, "OK ", 3) != 0) goto fail;
	splice_both(c, u);
	return NULL;
fail:
	/* Nothing listens on the guest's port (or no guest): the host's
	 * connection is closed, as libkrun closes it on the guest's RST. */
	if (u >= 0) close(u);
	close(c);
	return NULL;
}

/* A guest connection to a listen=false port, forwarded by vhost-device-vsock
 * to our socket vsock_<port>: connected to the port's path in the jail. */
static void *guest_conn(void *arg)
{
	struct conn *k = arg;
	struct sockaddr_un sa;
	struct jl j; jl_begin(&j, "vsock_connect"); /* as the host double logs it */
	jl_uint(&j, "port", k->vm->h.ports[k->idx].port); jl_str(&j, "filepath", k->vm->port_path[k->idx]);
	int dirfd = -1, u = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), r = u < 0 ? -errno : 0;
	if (!r) r = jail_sockaddr(k->vm, k->vm->port_path[k->idx], &sa, &dirfd);
	if (!r && connect(u, (struct sockaddr *)&sa, sizeof sa) < 0) r = -errno;
	if (r) jl_str(&j, "error", strerror(-r));
	jl_bool(&j, "connected", r == 0);
	jl_write(&j); /* the VMM's call log: the launcher has its descriptor (O_APPEND) */
	if (r) {
		if (u >= 0) close(u);
		close(k->fd);
	} else {
		splice_both(k->fd, u);
	}
	if (dirfd >= 0) close(dirfd);
	free(k);
	return NULL;
}

struct acceptor { struct vm *vm; int lfd, idx; };

static void *accept_loop(void *arg)
{
	struct acceptor *a = arg;
	bool listen = a->vm->h.ports[a->idx].listen;
	for (;;) {
		int c = accept4(a->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED) continue;
			return NULL;
		}
		struct conn *k = xrealloc(NULL, sizeof *k);
		*k = (struct conn){ a->vm, c, a->idx };
		pthread_t th;
		pthread_attr_t at;
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&th, &at, listen ? host_conn : guest_conn, k)) { close(c); free(k); }
		pthread_attr_destroy(&at);
	}
}

static void start_acceptor(struct vm *vm, int lfd, int idx)
{
	struct acceptor *a = xrealloc(NULL, sizeof *a);
	*a = (struct acceptor){ vm, lfd, idx };
	pthread_t th;
	if (pthread_create(&th, NULL, accept_loop, a)) { warnx_("vsock port %u: no thread: %s", vm->h.ports[idx].port, strerror(errno)); close(lfd); free(a); }
	else pthread_detach(th);
}

/* The host sockets of the listen=true ports, bound in the jail as libkrun's
 * vsock muxer binds them: a port that cannot be bound is only warned about
 * and the VM runs without it; the files are never unlinked. */
static void bind_listen_ports(struct vm *vm)
{
	for (uint32_t i = 0; i < vm->h.nports; i++) {
		if (!vm->h.ports[i].listen) continue;
		struct sockaddr_un sa;
		int dirfd = -1, r = jail_sockaddr(vm, vm->port_path[i], &sa, &dirfd);
		int fd = r < 0 ? -1 : socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (r == 0 && (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 128) < 0)) r = -errno;
		if (dirfd >= 0) close(dirfd);
		if (r < 0) {
			warnx_("WARN: failed to create listening proxy at %s: %s", vm->port_path[i], strerror(-r));
			if (fd >= 0) close(fd);
			continue;
		}
		start_acceptor(vm, fd, (int)i);
	}
}

/* Listeners for the guest's connections to listen=false ports, where
 * vhost-device-vsock connects: vsock_<port> in the qemu directory. */
static int bind_guest_ports(struct vm *vm, int *lfds)
{
	for (uint32_t i = 0; i < vm->h.nports; i++) {
		lfds[i] = -1;
		if (vm->h.ports[i].listen) continue;
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		snprintf(sa.sun_path, sizeof sa.sun_path, "vsock_%u", vm->h.ports[i].port);
		if ((lfds[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
		    bind(lfds[i], (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfds[i], 128) < 0) {
			int e = errno;
			warnx_("vsock port %u: listening on %s: %s", vm->h.ports[i].port, sa.sun_path, strerror(e));
			return -e;
		}
	}
	return 0;
}

/* ---- QEMU ---- */

struct argv { char **v; size_t n; };
static void arg(struct argv *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void arg(struct argv *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	a->v = xrealloc(a->v, (a->n + 2) * sizeof(char *));
	if (vasprintf(&a->v[a->n], fmt, ap) < 0) abort();
	a->v[++a->n] = NULL;
	va_end(ap);
}

/* QEMU's command line; fds 3 (the kernel), 4 (the console), 5 (krun-exit). */
static void qemu_args(struct vm *vm, const char *qemu, const char *stub, struct argv *a)
{
	int t = 0; /* the device's index, in libkrun's device order (see mmio_transport) */
	arg(a, "%s", qemu);
	arg(a, "-M"); arg(a, "microvm,acpi=off,auto-kernel-cmdline=off,memory-backend=mem");
	/* Single-threaded TCG: with QEMU 7.2's multi-threaded TCG a vCPU can run
	 * into the int3 of the kernel's live code patching (text_poke_bp) after
	 * the patch is done, and oops (1 boot in ~15 measured). */
	arg(a, "-accel"); arg(a, "tcg,thread=single");
	arg(a, "-cpu"); arg(a, "max");
	arg(a, "-nodefaults"); arg(a, "-no-user-config"); arg(a, "-nographic"); arg(a, "-no-reboot");
	arg(a, "-global"); arg(a, "virtio-mmio.force-legacy=false");
	arg(a, "-smp"); arg(a, "%u", vm->h.vcpus);
	arg(a, "-m"); arg(a, "%uM", vm->h.ram_mib);
	arg(a, "-object"); arg(a, "memory-backend-memfd,id=mem,size=%uM,share=on", vm->h.ram_mib);
	arg(a, "-kernel"); arg(a, "%s", stub);
	arg(a, "-device"); arg(a, "loader,file=/proc/self/fd/3,addr=%#zx,force-raw=on", kernel_load);
	arg(a, "-device"); arg(a, "loader,addr=%#x,data=%#zx,data-len=8", ENTRY_HANDOFF, kernel_entry);
	arg(a, "-device"); arg(a, "virtio-balloon-device,free-page-reporting=on,bus=virtio-mmio-bus.%d", mmio_transport(t++));
	arg(a, "-object"); arg(a, "rng-random,id=rng,filename=/dev/urandom");
	arg(a, "-device"); arg(a, "virtio-rng-device,rng=rng,bus=virtio-mmio-bus.%d", mmio_transport(t++));
	arg(a, "-device"); arg(a, "virtio-serial-device,bus=virtio-mmio-bus.%d", mmio_transport(t++));
	arg(a, "-chardev"); arg(a, "file,id=con,path=/proc/self/fd/4,append=on");
	arg(a, "-device"); arg(a, "virtconsole,chardev=con");
	arg(a, "-chardev"); arg(a, "file,id=exit,path=/proc/self/fd/5,append=on");
	arg(a, "-device"); arg(a, "virtserialport,chardev=exit,name=krun-exit");
	arg(a, "-chardev"); arg(a, "socket,id=fs,path=fs.sock");
	arg(a, "-device"); arg(a, "vhost-user-fs-device,chardev=fs,tag=/dev/root,bus=virtio-mmio-bus.%d", mmio_transport(t++));
	if (vm->h.vsock) {
		arg(a, "-chardev"); arg(a, "socket,id=vsock,path=vsock.sock");
		arg(a, "-device"); arg(a, "vhost-user-vsock-device,chardev=vsock,bus=virtio-mmio-bus.%d", mmio_transport(t++));
	}
	for (uint32_t i = 0; i < vm->h.nnics; i++) {
		uint32_t f = vm->h.nics[i].features;
		const uint8_t *m = vm->h.nics[i].mac;
		arg(a, "-netdev"); arg(a, "tap,id=net%u,ifname=%s,script=no,downscript=no", i, vm->tap[i]);
		arg(a, "-device");
		arg(a, "virtio-net-device,netdev=net%u,mac=%02x:%02x:%02x:%02x:%02x:%02x,bus=virtio-mmio-bus.%d,"
		       "csum=%s,guest_csum=%s,guest_tso4=%s,guest_tso6=%s,guest_ufo=%s,host_tso4=%s,host_tso6=%s,host_ufo=%s,"
		       "guest_ecn=off,host_ecn=off",
		    i, m[0], m[1], m[2], m[3], m[4], m[5], mmio_transport(t++),
		    f & NET_FEATURE_CSUM ? "on" : "off", f & NET_FEATURE_GUEST_CSUM ? "on" : "off",
		    f & NET_FEATURE_GUEST_TSO4 ? "on" : "off", f & NET_FEATURE_GUEST_TSO6 ? "on" : "off",
		    f & NET_FEATURE_GUEST_UFO ? "on" : "off", f & NET_FEATURE_HOST_TSO4 ? "on" : "off",
		    f & NET_FEATURE_HOST_TSO6 ? "on" : "off", f & NET_FEATURE_HOST_UFO ? "on" : "off");
	}
	arg(a, "-append"); arg(a, "%s", vm->cmdline);
}

/* The number of virtio-mmio transports qemu_args uses. */
static int transports(const struct ctx *c) { return 4 + (has_vsock(c) ? 1 : 0) + c->nnics; }

static int launch(struct vm *vm, int exitw)
{
	static const char *const virtiofsd_paths[] = { "/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd", NULL };
	char *qemu = find_prog("qemu-system-x86_64", NULL), *vfsd = find_prog("virtiofsd", virtiofsd_paths);
	char *vsockd = find_prog("vhost-device-vsock", NULL), stub[PATH_MAX];
	snprintf(stub, sizeof stub, "%s/bootstub", engine_dir);
	int ret = 0;
	if (!qemu) { warnx_("qemu-system-x86_64 not found on PATH (install Debian's qemu-system-x86)"); ret = -ENOENT; }
	if (!vfsd) { warnx_("virtiofsd not found (/usr/lib/qemu/virtiofsd: Debian 12's qemu-system-common)"); ret = -ENOENT; }
	if (!vsockd) { warnx_("vhost-device-vsock not found beside %s/libkrun.so.1 or on PATH (make deps; make testbins)", engine_dir); ret = -ENOENT; }
	if (access(stub, R_OK)) { warnx_("the boot stub %s: %s", stub, strerror(errno)); ret = -ENOENT; }
	if (ret) return ret;

	if ((vm->rootfd = jail_open(vm, vm->root, O_PATH | O_DIRECTORY)) < 0) {
		ret = -errno;
		warnx_("the guest root %s: %s", vm->root, strerror(-ret));
		return ret;
	}
	if (mkdirat(vm->cwd, "qemu", 0700) < 0 || (vm->qdir = openat(vm->cwd, "qemu", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
	    fchdir(vm->qdir) < 0) {
		ret = -errno;
		warnx_("making the engine's directory qemu in the VMM's cwd: %s", strerror(-ret));
		return ret;
	}
	if ((ret = place_init(vm))) return ret;

	/* virtiofsd: the root is its fd 3, chroot()ed into through /proc. */
	char *fs_argv[] = { vfsd, "--socket-path=fs.sock", "-o", "source=/proc/self/fd/3/.", "-o", "cache=auto",
			    "-o", "sandbox=chroot", "-o", "xattr", "-o", log_level >= 4 ? "log_level=debug" : "log_level=warn", NULL };
	if ((vm->virtiofsd = spawn(fs_argv, &vm->rootfd, 1)) < 0) { ret = -errno; warnx_("fork: %s", strerror(-ret)); return ret; }
	int glfds[MAXPORTS];
	if ((ret = bind_guest_ports(vm, glfds))) return ret;
	bool vsock = vm->h.vsock;
	if (vsock) {
		char *vs_argv[] = { vsockd, "--guest-cid", "3", "--socket", "vsock.sock", "--uds-path", "vsock", NULL };
		if ((vm->vsockd = spawn(vs_argv, NULL, 0)) < 0) { ret = -errno; warnx_("fork: %s", strerror(-ret)); return ret; }
	}
	if ((ret = wait_socket(vm, "fs.sock", vm->virtiofsd, "virtiofsd"))) return ret;
	if (vsock && (ret = wait_socket(vm, "vsock.sock", vm->vsockd, "vhost-device-vsock"))) return ret;

	int kfd = memfd_create("libkrunfw kernel", MFD_CLOEXEC);
	if (kfd < 0) return -errno;
	for (size_t off = 0; off < kernel_size;) {
		ssize_t w = write(kfd, kernel + off, kernel_size - off);
		if (w < 0 && errno == EINTR) continue;
		if (w <= 0) { ret = -errno; close(kfd); return ret ? ret : -EIO; }
		off += (size_t)w;
	}
	struct argv qa = { 0 };
	qemu_args(vm, qemu, stub, &qa);
	if (vm->h.log_level >= 3) {
		fprintf(stderr, "libkrun-qemu: starting");
		for (size_t i = 0; i < qa.n; i++) fprintf(stderr, " %s", qa.v[i]);
		fputc('\n', stderr);
	}
	int qfds[3] = { kfd, vm->console, exitw };
	vm->qemu_exec_ns = mono_ns();
	vm->qemu = spawn(qa.v, qfds, 3);
	if (vm->qemu < 0) ret = -errno;
	close(kfd);
	strv_free(qa.v);
	for (uint32_t i = 0; i < vm->h.nports; i++)
		if (glfds[i] >= 0) start_acceptor(vm, glfds[i], (int)i);
	free(qemu); free(vfsd); free(vsockd);
	return ret;
}

/* The timing line on the VMM's log (vmm.log), once init has started:
 * milliseconds from krun_start_enter to QEMU's spawn, to the guest kernel's
 * entry (init's arrival less the guest's uptime then: the kernel's clock
 * starts at its entry, give or take its first steps) and to init's "start".
 * An init that sent no uptime gives no kernel_entry_ms. */
static void report_timing(struct vm *vm, int64_t init_ns, const char *uptime)
{
	double ms = 1e-6;
	char entry[64] = "";
	if (uptime) {
		char *end;
		double up = strtod(uptime, &end);
		if (*end == 0 && end != uptime && up >= 0)
			snprintf(entry, sizeof entry, " kernel_entry_ms=%.3f", (double)(init_ns - vm->h.enter_ns) * ms - up * 1e3);
	}
	fprintf(stderr, "libkrun-qemu: timing qemu_exec_ms=%.3f%s init_ms=%.3f\n",
		(double)(vm->qemu_exec_ns - vm->h.enter_ns) * ms, entry, (double)(init_ns - vm->h.enter_ns) * ms);
}

/* Reads krun-exit until QEMU closes it: "start" or "start <uptime>" (init
 * runs; the uptime is the guest's CLOCK_BOOTTIME in seconds) removes
 * init.krun, binds the listening ports and writes the timing line, "exit N"
 * is the workload's status. */
static void watch(struct vm *vm, int exitr, int *code, bool *reported, bool *started)
{
	char line[128];
	size_t n = 0;
	bool skip = false;
	for (;;) {
		char c;
		ssize_t r = read(exitr, &c, 1);
		if (r < 0 && errno == EINTR) continue;
		if (r <= 0) return;
		if (c != '\n') {
			if (n < sizeof line - 1) line[n++] = c;
			else skip = true; /* an overlong line is not ours */
			continue;
		}
		line[n] = 0;
		if (!skip && (strcmp(line, "start") == 0 || strncmp(line, "start ", 6) == 0) && !*started) {
			int64_t now = mono_ns();
			*started = true;
			remove_init(vm); /* it runs: the guest holds it open */
			bind_listen_ports(vm);
			report_timing(vm, now, line[5] ? line + 6 : NULL);
		} else if (!skip && strncmp(line, "exit ", 5) == 0 && !*reported) {
			char *end;
			long v = strtol(line + 5, &end, 10);
			if (*end == 0 && end != line + 5) { *code = (int)(v & 0xff); *reported = true; }
		}
		n = 0;
		skip = false;
	}
}

static void reap(pid_t *pid)
{
	if (*pid <= 0) return;
	kill(*pid, SIGKILL);
	while (waitpid(*pid, NULL, 0) < 0 && errno == EINTR) {}
	*pid = -1;
}

static void cleanup_qdir(struct vm *vm)
{
	static const char *const names[] = { "fs.sock", "vsock.sock", "vsock", NULL };
	if (vm->qdir < 0) return;
	for (int i = 0; names[i]; i++) unlinkat(vm->qdir, names[i], 0);
	for (uint32_t i = 0; i < vm->h.nports; i++) {
		char n[32];
		snprintf(n, sizeof n, "vsock_%u", vm->h.ports[i].port);
		if (!vm->h.ports[i].listen) unlinkat(vm->qdir, n, 0);
	}
	if (fchdir(vm->cwd) == 0) unlinkat(vm->cwd, "qemu", AT_REMOVEDIR);
}

static void launcher_main(int sock)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != vmm_pid) _exit(0); /* the VMM is gone already */
	prctl(PR_SET_NAME, "krun-launcher");
	/* A mount namespace of its own before the VMM pivots (the VMM waits
	 * for this answer): the host's view stays here. */
	int32_t st = 0;
	if (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) {
		st = -errno;
		warnx_("launcher: a mount namespace of its own: %s", strerror(errno));
	}
	if (send(sock, &st, sizeof st, MSG_NOSIGNAL) != sizeof st || st) _exit(0);

	static char buf[MSG_MAX];
	int fds[3];
	union { struct cmsghdr h; char b[CMSG_SPACE(sizeof fds)]; } u;
	struct iovec iov = { buf, sizeof buf - 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof u.b };
	ssize_t n;
	while ((n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {}
	if (n <= 0) _exit(0); /* the VMM ended without starting the VM */
	buf[n] = 0;
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
	struct vm vm;
	memset(&vm, 0, sizeof vm);
	vm.rootfd = vm.qdir = -1;
	if ((size_t)n < sizeof vm.h || !cm || cm->cmsg_type != SCM_RIGHTS || cm->cmsg_len != CMSG_LEN(sizeof fds)) _exit(125);
	memcpy(fds, CMSG_DATA(cm), sizeof fds);
	memcpy(&vm.h, buf, sizeof vm.h);
	if (vm.h.nports > MAXPORTS || vm.h.nnics > MAXNETS) _exit(125);
	vm.jail = fds[0], vm.cwd = fds[1], vm.console = fds[2];
	char *p = buf + sizeof vm.h;
	vm.root = p; p += strlen(p) + 1;
	vm.cmdline = p; p += strlen(p) + 1;
	for (uint32_t i = 0; i < vm.h.nports; i++) { vm.port_path[i] = p; p += strlen(p) + 1; }
	for (uint32_t i = 0; i < vm.h.nnics; i++) { vm.tap[i] = p; p += strlen(p) + 1; }
	log_level = vm.h.log_level;

	int exitp[2] = { -1, -1 };
	struct started_msg sm = { 0, -1 };
	if (pipe2(exitp, O_CLOEXEC)) sm.ret = -errno;
	else sm.ret = launch(&vm, exitp[1]);
	sm.qemu_pid = vm.qemu;
	if (exitp[1] >= 0) close(exitp[1]);
	close(vm.console);
	if (sm.ret) {
		reap(&vm.qemu); reap(&vm.virtiofsd); reap(&vm.vsockd);
		remove_init(&vm);
		cleanup_qdir(&vm);
	}
	if (send(sock, &sm, sizeof sm, MSG_NOSIGNAL) != sizeof sm || sm.ret) _exit(0);

	int code = 0, ws = 0;
	bool reported = false, started = false;
	watch(&vm, exitp[0], &code, &reported, &started);
	while (waitpid(vm.qemu, &ws, 0) < 0 && errno == EINTR) {}
	vm.qemu = -1;
	reap(&vm.virtiofsd);
	reap(&vm.vsockd);
	remove_init(&vm);
	cleanup_qdir(&vm);
	if (!reported) {
		/* libkrun: a guest reset without a code is 0, a vCPU failure 1. */
		code = WIFEXITED(ws) && WEXITSTATUS(ws) == 0 ? 0 : 1;
		if (!started)
			warnx_("the guest ended before its init started (QEMU wait status %#x): the kernel did not boot, or /init.krun could not run; see the guest console", ws);
		else
			warnx_("the guest ended without its init reporting the workload's exit status (QEMU wait status %#x)", ws);
	}
	struct ended_msg em = { code, reported, started, ws };
	(void)!send(sock, &em, sizeof em, MSG_NOSIGNAL);
	_exit(0);
}

/* ---- krun_start_enter ---- */

int32_t krun_start_enter(uint32_t id)
{
	/* As libkrun: the calling thread is renamed first thing. */
	const char *hn = getenv("HOSTNAME");
	char prname[64];
	snprintf(prname, sizeof prname, hn ? "VM:%s" : "libkrun VM", hn);
	prctl(PR_SET_NAME, prname);

	int64_t enter_ns = mono_ns();
	struct jl j; jl_begin(&j, "krun_start_enter");
	int32_t ret;
	struct ctx *c = get(&j, id, "krun_start_enter", &ret);
	if (!c) return jl_done(&j, ret);
	ctxs[id] = NULL; /* libkrun takes the context out of its map */
	if (!krunfw) {
		fprintf(stderr, "Couldn't find or load libkrunfw.so.5\n");
		return jl_done(&j, -ENOENT);
	}
	if (launcher_sock < 0) return jl_done(&j, -EINVAL);
	if (c->vcpus > MAX_VCPUS) {
		warnx_("Building the microVM failed: %u vCPUs: the MP table holds %d", c->vcpus, MAX_VCPUS);
		return jl_done(&j, -EINVAL);
	}
	if (!c->root) {
		warnx_("Building the microVM failed: no root (krun_set_root)");
		return jl_done(&j, -EINVAL);
	}
	static struct cmdline cl;
	const char *why = NULL;
	start_line = &j;
	bool tsi_inet, tsi_unix;
	tsi_of(c, &tsi_inet, &tsi_unix);
	jl_bool(&j, "tsi", tsi_inet);
	if (!build_cmdline(c, transports(c), &cl, &why)) {
		warnx_("Building the microVM failed: kernel command line: %s", why);
		return jl_done(&j, -EINVAL);
	}
	jl_str(&j, "cmdline", cl.b);

	/* libkrun opens the console file here (File::create), in its view. */
	int console = c->console ? open(c->console, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666) : fcntl(1, F_DUPFD_CLOEXEC, 3);
	if (console < 0) {
		warnx_("Building the microVM failed: console %s: %s", c->console ? c->console : "stdout", strerror(errno));
		return jl_done(&j, -EINVAL);
	}
	int jail = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC), cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	char wd[PATH_MAX];
	if (jail < 0 || cwd < 0 || !getcwd(wd, sizeof wd)) {
		ret = -errno;
		close(console);
		if (jail >= 0) close(jail);
		if (cwd >= 0) close(cwd);
		return jl_done(&j, ret);
	}

	static char buf[MSG_MAX];
	struct start_msg h;
	memset(&h, 0, sizeof h);
	h.vcpus = c->vcpus, h.ram_mib = c->ram_mib, h.nports = (uint32_t)c->nports, h.nnics = (uint32_t)c->nnics;
	h.vsock = has_vsock(c);
	h.log_level = log_level;
	h.enter_ns = enter_ns;
	for (int i = 0; i < c->nports; i++) h.ports[i].port = c->ports[i].port, h.ports[i].listen = c->ports[i].listen;
	for (int i = 0; i < c->nnics; i++) memcpy(h.nics[i].mac, c->nics[i].mac, 6), h.nics[i].features = c->nics[i].features;
	size_t off = sizeof h;
	memcpy(buf, &h, sizeof h);
	bool fits = true;
	/* Paths go absolute, in the jail: relative ones are the VMM's cwd's. */
	for (int i = 0; i < 2 + c->nports + c->nnics && fits; i++) {
		char abs[PATH_MAX * 2];
		const char *v = i == 0 ? c->root : i == 1 ? cl.b : i < 2 + c->nports ? c->ports[i - 2].path : c->nics[i - 2 - c->nports].tap;
		if (i != 1 && i < 2 + c->nports && v[0] != '/') { snprintf(abs, sizeof abs, "%s/%s", strcmp(wd, "/") ? wd : "", v); v = abs; }
		size_t l = strlen(v) + 1;
		if (off + l > sizeof buf) fits = false;
		else { memcpy(buf + off, v, l); off += l; }
	}
	int fds[3] = { jail, cwd, console };
	struct started_msg sm = { -EIO, -1 };
	if (!fits) ret = -E2BIG;
	else if ((ret = send_fds(launcher_sock, buf, off, fds, 3)) == 0 && recv_all(launcher_sock, &sm, sizeof sm) != sizeof sm) ret = -EIO;
	else if (!ret) ret = sm.ret;
	close(jail); close(cwd); close(console);
	if (ret) {
		warnx_("krun_start_enter: %s", strerror(-ret));
		return jl_done(&j, ret);
	}
	jl_int(&j, "qemu_pid", sm.qemu_pid);
	jl_done(&j, 0);
	ctx_free(c);

	/* The guest ends: how, from the launcher; then the process goes, as
	 * libkrun's Vmm::stop _exit()s. */
	struct ended_msg em = { 1, 0, 0, -1 };
	if (recv_all(launcher_sock, &em, sizeof em) != sizeof em) {
		warnx_("the launcher ended without reporting the guest's end");
		em.code = 1;
	}
	while (waitpid(launcher_pid, NULL, 0) < 0 && errno == EINTR) {}
	jl_begin(&j, "workload_exit");
	jl_int(&j, "qemu_pid", sm.qemu_pid); jl_int(&j, "status", em.code); jl_bool(&j, "reported", em.reported);
	jl_bool(&j, "init_started", em.started); jl_int(&j, "qemu_wait_status", em.qemu_status);
	jl_write(&j);
	_exit(em.code);
}
