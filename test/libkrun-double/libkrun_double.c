/*
 * libkrun test double (soname libkrun.so.1): implements the part of libkrun's
 * C API that boxlite-vmm uses, for machines where no guest can boot.
 * See DESIGN.md, "Testing where no guest can boot".
 *
 *  - Every call is recorded, with its arguments and return value, as one JSON
 *    line in $KRUN_DOUBLE_LOG, else ./krun-calls.jsonl (the VMM's cwd is the
 *    sandbox state directory): test/libkrun-calllog/calllog.h, shared with
 *    the emulated engine test/libkrun-qemu.
 *  - krun_create_ctx dlopens "libkrunfw.so.5" through the loader's search path,
 *    as libkrun does, calls krunfw_get_version/krunfw_get_kernel and logs what
 *    it got and from where ("krunfw_load"). The library stays mapped.
 *  - krun_start_enter listens on the Unix socket of each listen=true vsock
 *    port, and starts the "guest": a stand-in for libkrun's init (init.krun)
 *    as PID 1 of new mount/PID/UTS/IPC namespaces (not network, with TSI: the
 *    VMM's is the pod's) rooted at the configured root (a slave of the host's
 *    mount of it, so later host mounts under the root reach the workload, as
 *    over virtio-fs). Like init.krun it mounts /dev, /proc, /sys,
 *    /sys/fs/cgroup, /dev/pts and /dev/shm, makes / rshared, and forks the
 *    workload (so the workload is NOT PID 1) as a HOST process, with the
 *    sockets as fds 3.. (LISTEN_FDS, LISTEN_PID, BOXLITE_VSOCK_PORTS) and
 *    BOXLITE_TEST_DOUBLE=1; it waits for it and hands its status (code, or
 *    128+signal) to the VMM, which _exit()s with it, as libkrun does when the
 *    guest ends. It is not a VM.
 *  - The workload gets the arguments and environment a guest kernel would
 *    give init from libkrun's kernel command line: init's argv is the
 *    command-line words libkrun adds before "--" that the kernel does not
 *    know (tsi_hijack, when TSI is on and the staged kernel lacks libkrunfw's
 *    TSI patch: the double looks for the patch's boot parameter name in the
 *    kernel bytes, as package kernel does), then the arguments; its
 *    environment is HOME=/, TERM=linux, KRUN_INIT, KRUN_WORKDIR and the
 *    configured variables (libkrun's init never unsets KRUN_*). Beyond the
 *    guest kernel's 32 init arguments or environment variables
 *    (CONFIG_INIT_ENV_ARG_LIMIT; init/main.c) the kernel panics before any
 *    console is up: the VMM exits 0 and the workload never runs. A command
 *    line over libkrun's 64 KiB or with a byte outside printable ASCII makes
 *    libkrun panic in krun_start_enter (an .unwrap()): the double aborts.
 *  - TSI and vsock follow libkrun 1.17+: krun_disable_implicit_vsock,
 *    krun_add_vsock (-EEXIST unless implicit vsock was disabled first), and
 *    krun_add_vsock_port2 (-ENODEV after krun_disable_implicit_vsock until
 *    krun_add_vsock; -EEXIST for listen=true when the path exists, checked at
 *    the call). Without TSI and without a network device the workload gets a
 *    network namespace of its own, with nothing in it, as a guest with no
 *    network would.
 *  - DOUBLE_VERSION (major*10000 + minor*100 + patch, default 11900: 1.19.0)
 *    picks which libkrun release the double's exported symbols are those of
 *    (boxlite-vmm tells libkrun's version from them and from the file name):
 *    krun_get_max_vcpus and krun_disable_implicit_console from 1.16.0,
 *    krun_add_vsock and krun_disable_implicit_vsock from 1.17.0 (before that
 *    it loads libkrunfw.so.4, as libkrun did), krun_has_feature from 1.17.3,
 *    krun_add_virtiofs3 from 1.18.0, and krun_disable_implicit_init,
 *    krun_get_default_init and krun_fs_add_overlay_dir/_file from 1.19.0.
 *    Those the VMM does not call are recorded and answer -ENOTSUP.
 *  - krun_add_net_tap gives the "guest" a network device, as libkrun's TAP
 *    backend gives a real guest its virtio-net eth0: krun_start_enter opens the
 *    named TAP in the VMM's network namespace (the pod's), runs the workload
 *    in a new network namespace too, where it makes a TAP "eth0" with the given
 *    MAC, and a thread of the VMM copies frames between the two. Without it the
 *    workload shares the VMM's network namespace, as TSI shares the VMM's
 *    network with a real guest.
 *  - KRUN_DOUBLE_FAIL=name[,name...] makes the named calls fail with -EINVAL.
 *
 * Build: cc -shared -fPIC -Wl,-soname,libkrun.so.1 -o libkrun.so.1 libkrun_double.c -ldl
 *   (a release's variant: -DDOUBLE_VERSION=11800, installed as libkrun.so.1.18.0)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../libkrun-calllog/calllog.h"

extern char **environ;

#ifndef DOUBLE_VERSION
#define DOUBLE_VERSION 11900
#endif
/* libkrun dlopens this kernel library (libkrunfw.so.4 before 1.17.0). */
#if DOUBLE_VERSION >= 11700
#define KRUNFW_SONAME "libkrunfw.so.5"
#else
#define KRUNFW_SONAME "libkrunfw.so.4"
#endif

#define MAXCTX 8
#define MAXPORTS 16

/* libkrun 1.17's VsockConfig: implicit (TSI when there is no network
 * device), disabled, or explicit with TSI features (KRUN_TSI_HIJACK_*). */
enum vsock_mode { VSOCK_IMPLICIT, VSOCK_DISABLED, VSOCK_EXPLICIT };
#define KRUN_TSI_HIJACK_INET (1u << 0)
#define KRUN_TSI_HIJACK_UNIX (1u << 1)

struct port { uint32_t port; char *path; bool listen; };
struct ctx {
	char *root, *workdir, *exec, *console;
	char **argv, **envp; /* NULL-terminated copies; envp NULL = inherit */
	struct port ports[MAXPORTS];
	int nports;
	char *tap; /* krun_add_net_tap's device, NULL = TSI */
	uint8_t mac[6];
	enum vsock_mode vsock;
	uint32_t tsi_features; /* VSOCK_EXPLICIT's */
};
static struct ctx *ctxs[MAXCTX];
static void *krunfw;
static bool krunfw_tsi; /* the kernel has libkrunfw's TSI patch */

/* The ctx for id or NULL (and *ret = -EINVAL); also applies KRUN_DOUBLE_FAIL. */
static struct ctx *get(struct jl *j, uint32_t id, const char *call, int32_t *ret)
{
	jl_uint(j, "ctx", id);
	*ret = (id < MAXCTX && ctxs[id]) ? inject(j, call) : -EINVAL;
	return *ret ? NULL : ctxs[id];
}

int krun_test_double(void) { return 1; }

int32_t krun_set_log_level(uint32_t level)
{
	struct jl j; jl_begin(&j, "krun_set_log_level"); jl_uint(&j, "level", level);
	return jl_done(&j, level > 5 ? -EINVAL : inject(&j, "krun_set_log_level"));
}

typedef char *(*get_kernel_fn)(size_t *, size_t *, size_t *);
typedef int (*get_version_fn)(void);

/* The name of libkrunfw's TSI boot parameter as the kernel stores it (see
 * package kernel, tsiMarker): present = the kernel consumes the word. */
static const char tsi_marker[] = "\0tsi_hijack";

/* Loads libkrunfw.so.5 once per process, by soname, as libkrun does. */
static int32_t load_krunfw(void)
{
	if (krunfw) return 0;
	struct jl j; jl_begin(&j, "krunfw_load"); jl_str(&j, "soname", KRUNFW_SONAME);
	void *h = dlopen(KRUNFW_SONAME, RTLD_NOW);
	if (!h) {
		const char *e = dlerror();
		fprintf(stderr, "libkrun-double: dlopen %s: %s\n", KRUNFW_SONAME, e);
		jl_str(&j, "error", e);
		return jl_done(&j, -ENOENT);
	}
	get_kernel_fn gk = (get_kernel_fn)dlsym(h, "krunfw_get_kernel");
	get_version_fn gv = (get_version_fn)dlsym(h, "krunfw_get_version");
	size_t load = 0, entry = 0, size = 0;
	char *k = (gk && gv) ? gk(&load, &entry, &size) : NULL;
	struct link_map *lm = NULL;
	char real[PATH_MAX];
	if (dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm) {
		jl_str(&j, "path", lm->l_name);
		jl_str(&j, "realpath", realpath(lm->l_name, real) ? real : NULL);
	}
	if (!k) {
		fprintf(stderr, "libkrun-double: %s has no usable krunfw_get_kernel/krunfw_get_version\n", KRUNFW_SONAME);
		jl_str(&j, "error", "no kernel from krunfw_get_kernel");
		dlclose(h);
		return jl_done(&j, -EINVAL);
	}
	/* sizeof tsi_marker counts the terminating NUL: "\0tsi_hijack\0". */
	krunfw_tsi = memmem(k, size, tsi_marker, sizeof tsi_marker) != NULL;
	jl_int(&j, "version", gv());
	jl_uint(&j, "load_addr", load);
	jl_uint(&j, "entry_addr", entry);
	jl_uint(&j, "size", size);
	jl_bool(&j, "tsi_patch", krunfw_tsi);
	krunfw = h; /* never closed: stays mapped for the VMM's lifetime */
	return jl_done(&j, 0);
}

static int32_t fork_guest(void);

int32_t krun_create_ctx(void)
{
	struct jl j; jl_begin(&j, "krun_create_ctx");
	int32_t ret = inject(&j, "krun_create_ctx");
	if (!ret) ret = load_krunfw();
	if (!ret) ret = fork_guest();
	for (int i = 0; !ret && i <= MAXCTX; i++) {
		if (i == MAXCTX) ret = -ENOMEM;
		else if (!ctxs[i]) { ctxs[i] = xrealloc(NULL, sizeof(struct ctx)); memset(ctxs[i], 0, sizeof(struct ctx)); ret = i; break; }
	}
	return jl_done(&j, ret);
}

int32_t krun_free_ctx(uint32_t id)
{
	struct jl j; jl_begin(&j, "krun_free_ctx");
	int32_t ret;
	struct ctx *c = get(&j, id, "krun_free_ctx", &ret);
	if (c) {
		free(c->root); free(c->workdir); free(c->exec); free(c->console);
		strv_free(c->argv); strv_free(c->envp);
		for (int i = 0; i < c->nports; i++) free(c->ports[i].path);
		free(c->tap);
		free(c);
		ctxs[id] = NULL;
	}
	return jl_done(&j, ret);
}

int32_t krun_set_vm_config(uint32_t id, uint8_t vcpus, uint32_t ram_mib)
{
	struct jl j; jl_begin(&j, "krun_set_vm_config");
	int32_t ret;
	get(&j, id, "krun_set_vm_config", &ret);
	jl_uint(&j, "vcpus", vcpus); jl_uint(&j, "ram_mib", ram_mib);
	return jl_done(&j, !ret && (vcpus == 0 || ram_mib == 0) ? -EINVAL : ret);
}

/* Shared body of the calls that set one path. */
static int32_t set_path(const char *call, uint32_t id, const char *key, const char *v, size_t field)
{
	struct jl j; jl_begin(&j, call);
	int32_t ret;
	struct ctx *c = get(&j, id, call, &ret);
	jl_str(&j, key, v);
	if (c && !v) ret = -EINVAL;
	else if (c) { char **f = (char **)((char *)c + field); free(*f); *f = xstrdup(v); }
	return jl_done(&j, ret);
}
int32_t krun_set_root(uint32_t id, const char *root) { return set_path("krun_set_root", id, "root", root, offsetof(struct ctx, root)); }
int32_t krun_set_workdir(uint32_t id, const char *wd) { return set_path("krun_set_workdir", id, "workdir", wd, offsetof(struct ctx, workdir)); }
int32_t krun_set_console_output(uint32_t id, const char *f) { return set_path("krun_set_console_output", id, "filepath", f, offsetof(struct ctx, console)); }

/* argv excludes the program name, as in libkrun. */
int32_t krun_set_exec(uint32_t id, const char *exec_path, const char *const argv[], const char *const envp[])
{
	struct jl j; jl_begin(&j, "krun_set_exec");
	int32_t ret;
	struct ctx *c = get(&j, id, "krun_set_exec", &ret);
	jl_str(&j, "exec_path", exec_path); jl_strv(&j, "argv", argv); jl_strv(&j, "envp", envp);
	if (c && !exec_path) ret = -EINVAL;
	else if (c) {
		free(c->exec); strv_free(c->argv); strv_free(c->envp);
		c->exec = xstrdup(exec_path);
		c->argv = strv_dup(argv);
		c->envp = envp ? strv_dup(envp) : NULL;
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
	if (c && (!filepath || c->nports == MAXPORTS)) ret = -EINVAL;
	/* As libkrun 1.17+: no vsock device after krun_disable_implicit_vsock
	 * until krun_add_vsock. */
	else if (c && c->vsock == VSOCK_DISABLED) ret = -ENODEV;
	/* As libkrun: a listening port's path is checked here (Path::try_exists,
	 * which follows links), never unlinked; the socket is bound later. */
	else if (c && listen && stat(filepath, &st) == 0) ret = -EEXIST;
	else if (c && listen && errno != ENOENT) ret = -EINVAL;
	else if (c) c->ports[c->nports++] = (struct port){ port, xstrdup(filepath), listen };
	return jl_done(&j, ret);
}

#if DOUBLE_VERSION >= 11700
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
#endif

/* Calls of newer releases that the VMM does not make: recorded, and
 * answered -ENOTSUP (the double does not model them). They exist so that
 * the double's symbols are those of the release it stands for. */
static int32_t unmodelled(const char *call, uint32_t id)
{
	struct jl j; jl_begin(&j, call); jl_uint(&j, "ctx", id);
	return jl_done(&j, -ENOTSUP);
}
#if DOUBLE_VERSION >= 11600
int32_t krun_get_max_vcpus(void) { return unmodelled("krun_get_max_vcpus", 0); }
int32_t krun_disable_implicit_console(uint32_t id) { return unmodelled("krun_disable_implicit_console", id); }
#endif
#if DOUBLE_VERSION >= 11703
/* KRUN_FEATURE_NET (0): the double has krun_add_net_tap; features added
 * after the double's release (KRUN_FEATURE_INIT_BLOB, 11, in 1.19.0) are
 * -EINVAL, as libkrun answers them; the rest are not there. */
int32_t krun_has_feature(uint64_t feature)
{
	struct jl j; jl_begin(&j, "krun_has_feature"); jl_uint(&j, "feature", feature);
	int32_t ret = feature == 0 ? 1 : (feature >= 11 && DOUBLE_VERSION < 11900) || feature > 11 ? -EINVAL : 0;
	return jl_done(&j, ret);
}
#endif
#if DOUBLE_VERSION >= 11800
int32_t krun_add_virtiofs3(uint32_t id, const char *tag, const char *path, uint64_t shm, bool ro)
{
	(void)tag; (void)path; (void)shm; (void)ro;
	return unmodelled("krun_add_virtiofs3", id);
}
#endif
#if DOUBLE_VERSION >= 11900
int32_t krun_disable_implicit_init(uint32_t id) { return unmodelled("krun_disable_implicit_init", id); }
int32_t krun_get_default_init(uint8_t **buf, size_t *len) { (void)buf; (void)len; return unmodelled("krun_get_default_init", 0); }
int32_t krun_fs_add_overlay_dir(uint32_t id, const char *fs, const char *path) { (void)fs; (void)path; return unmodelled("krun_fs_add_overlay_dir", id); }
int32_t krun_fs_add_overlay_file(uint32_t id, const char *fs, const char *path, const char *src) { (void)fs; (void)path; (void)src; return unmodelled("krun_fs_add_overlay_file", id); }
#endif

int32_t krun_add_net_tap(uint32_t id, char *name, uint8_t *const mac, uint32_t features, uint32_t flags)
{
	struct jl j; jl_begin(&j, "krun_add_net_tap");
	int32_t ret;
	struct ctx *c = get(&j, id, "krun_add_net_tap", &ret);
	char m[18] = "";
	if (mac) snprintf(m, sizeof m, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
	jl_str(&j, "tap_name", name); jl_str(&j, "mac", mac ? m : NULL); jl_uint(&j, "features", features); jl_uint(&j, "flags", flags);
	if (c && (!name || !*name || strlen(name) >= IFNAMSIZ || !mac)) ret = -EINVAL;
	else if (c && c->tap) ret = -EEXIST; /* one device is all the double models */
	else if (c) { c->tap = xstrdup(name); memcpy(c->mac, mac, 6); }
	return jl_done(&j, ret);
}

/* ---- the network device ---- */

static void die(const char *what, int code);

/* Opens (attaches to, or creates) TAP name in the caller's network namespace. */
static int tap_open(const char *name)
{
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0) return -1;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
	if (ioctl(fd, TUNSETIFF, &ifr)) { int e = errno; close(fd); errno = e; return -1; }
	return fd;
}

/* The guest's eth0, made by the workload in its new network namespace, and
 * sent to the VMM over sock: only async-signal-safe calls. */
static void guest_nic(struct ctx *c, int sock)
{
	int fd = tap_open("eth0");
	if (fd < 0) die("create the guest's eth0 (TAP)", 125);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	strcpy(ifr.ifr_name, "eth0");
	ifr.ifr_hwaddr.sa_family = 1; /* ARPHRD_ETHER */
	memcpy(ifr.ifr_hwaddr.sa_data, c->mac, 6);
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0 || ioctl(s, SIOCSIFHWADDR, &ifr)) die("set eth0's MAC", 125);
	close(s);
	char b = 0;
	struct iovec iov = { &b, 1 };
	union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } u;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET; cm->cmsg_type = SCM_RIGHTS; cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof fd);
	if (sendmsg(sock, &msg, 0) != 1) die("send eth0 to the VMM", 125);
	close(fd);
	close(sock);
}

static int recv_fd(int sock)
{
	char b;
	struct iovec iov = { &b, 1 };
	union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } u;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
	ssize_t n;
	while ((n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {}
	struct cmsghdr *cm = n == 1 ? CMSG_FIRSTHDR(&msg) : NULL;
	if (!cm || cm->cmsg_type != SCM_RIGHTS) return -1;
	int fd;
	memcpy(&fd, CMSG_DATA(cm), sizeof fd);
	return fd;
}

/* Frames go both ways between the pod's TAP and the guest's eth0, as the
 * virtio-net device moves them between its queues and the TAP. */
static void *pump(void *arg)
{
	int *fds = arg;
	static char buf[2][65536];
	struct pollfd p[2] = { { fds[0], POLLIN, 0 }, { fds[1], POLLIN, 0 } };
	for (;;) {
		if (poll(p, 2, -1) < 0) { if (errno == EINTR) continue; break; }
		for (int i = 0; i < 2; i++) {
			if (p[i].revents & (POLLERR | POLLHUP | POLLNVAL)) return NULL;
			if (!(p[i].revents & POLLIN)) continue;
			ssize_t n = read(fds[i], buf[i], sizeof buf[i]);
			if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
			if (n <= 0) return NULL;
			(void)!write(fds[1 - i], buf[i], (size_t)n); /* a dropped frame is what a NIC does */
		}
	}
	return NULL;
}

/* ---- the guest: a helper forked by krun_create_ctx ----
 *
 * krun_create_ctx is the last libkrun call a VMM makes before it confines
 * itself (boxlite-vmm's jail makes it before pivot_root and before dropping
 * capabilities: libkrun loads libkrunfw there). The double forks its stand-in
 * for the guest there: a process that keeps the privileges a guest's root has
 * inside its VM, so that it can run the guest's init and workload as host
 * processes in namespaces of their own. It shares the VMM's mount namespace,
 * so the pivot takes it into the jail with the VMM, and waits.
 * krun_start_enter sends it the configuration and the fds; the VMM process
 * itself then does only what libkrun's process does (the vsock sockets, the
 * console file, the TAP and its frames) with what it was left.
 */
static int guest_sock = -1;
static pid_t guest_pid = -1;

/* One message: the header, then root, workdir ("" = none), argv (the exec
 * path first) and envp, each NUL-terminated; fds: the listening sockets,
 * then the console and the network socket where present. newnet: the guest
 * has no network (no TSI, no device): a network namespace of its own. */
struct guest_msg {
	int32_t nports, console, nic, newnet, argc, envc;
	uint8_t mac[6];
};
#define GUEST_MSG_MAX (256 * 1024)

/* What the guest reports when it ends: the exit code init set (libkrun's
 * init does it through a virtio-fs ioctl after its workload exits), if it
 * set one. Without one (init failed, the kernel panicked) libkrun exits 0. */
struct guest_exit {
	int32_t set, code, signaled;
};

static void guest_main(int sock);

static int32_t fork_guest(void)
{
	if (guest_sock >= 0) return 0;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) return -errno;
	pid_t pid = fork();
	if (pid < 0) { int e = errno; close(sv[0]); close(sv[1]); return -e; }
	if (pid == 0) { close(sv[0]); guest_main(sv[1]); }
	close(sv[1]);
	guest_sock = sv[0];
	guest_pid = pid;
	return 0;
}

static void die(const char *what, int code);
static void guest_init(struct ctx *c, const int *fds, int n, int console, int gate, int nic, int code, char *const argv[], char *const envp[]);

/* The guest side: waits for krun_start_enter's message, clones the guest's
 * init, reports its pid, lets it go once the VMM has logged it, and reports
 * the exit code init set. */
static void guest_main(int sock)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	static char buf[GUEST_MSG_MAX];
	int fds[MAXPORTS + 2];
	union { struct cmsghdr h; char b[CMSG_SPACE(sizeof fds)]; } u;
	struct iovec iov = { buf, sizeof buf - 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof u.b };
	ssize_t n;
	while ((n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {}
	if (n <= 0) _exit(0); /* the VMM ended without starting the guest */
	buf[n] = 0;
	if (chdir("/")) die("chdir / in the jail", 125);
	struct guest_msg h;
	memcpy(&h, buf, sizeof h);
	int nfds = 0;
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
	if (cm && cm->cmsg_type == SCM_RIGHTS) {
		nfds = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		memcpy(fds, CMSG_DATA(cm), nfds * sizeof(int));
	}
	if (nfds != h.nports + h.console + h.nic) die("guest message: wrong number of fds", 125);
	char *p = buf + sizeof h, **av = xrealloc(NULL, (h.argc + 1) * sizeof(char *)), **ev = xrealloc(NULL, (h.envc + 1) * sizeof(char *));
	struct ctx c;
	memset(&c, 0, sizeof c);
	c.root = p; p += strlen(p) + 1;
	c.workdir = *p ? p : NULL; p += strlen(p) + 1;
	for (int i = 0; i < h.argc; i++) { av[i] = p; p += strlen(p) + 1; }
	for (int i = 0; i < h.envc; i++) { ev[i] = p; p += strlen(p) + 1; }
	av[h.argc] = ev[h.envc] = NULL;
	c.exec = av[0];
	memcpy(c.mac, h.mac, 6);
	if (h.nic) c.tap = "eth0";
	int console = h.console ? fds[h.nports] : -1, nic = h.nic ? fds[h.nports + h.console] : -1;

	int gate[2], code[2] = { -1, -1 };
	int32_t reply;
	pid_t pid = -1;
	if (pipe2(gate, O_CLOEXEC) || pipe2(code, O_CLOEXEC)) {
		reply = -errno;
	} else {
		int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | (h.nic || h.newnet ? CLONE_NEWNET : 0);
		pid = (pid_t)syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
		if (pid == 0) { close(gate[1]); close(code[0]); guest_init(&c, fds, h.nports, console, gate[0], nic, code[1], av, ev); }
		reply = pid < 0 ? -errno : pid;
		close(gate[0]);
		close(code[1]);
	}
	if (send(sock, &reply, sizeof reply, 0) != sizeof reply || pid < 0) _exit(125);
	char go;
	while (recv(sock, &go, 1, 0) < 0 && errno == EINTR) {} /* the VMM has logged the pid */
	close(gate[1]);
	for (int i = 0; i < nfds; i++) close(fds[i]);
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
	struct guest_exit ge = { 0, 0, 0 };
	int32_t got[2];
	ssize_t r;
	while ((r = read(code[0], got, sizeof got)) < 0 && errno == EINTR) {}
	if (r == sizeof got) { ge.set = 1; ge.code = got[0]; ge.signaled = got[1]; }
	(void)!send(sock, &ge, sizeof ge, 0);
	_exit(0);
}

/* Async-signal-safe failure report for the forked processes. */
static void die(const char *what, int code)
{
	char b[16]; int n = 0, e = errno;
	do b[sizeof b - 1 - n++] = (char)('0' + e % 10); while ((e /= 10) && n < 10);
	(void)!write(2, "libkrun-double: workload setup: ", 32);
	(void)!write(2, what, strlen(what));
	(void)!write(2, ": errno ", 8);
	(void)!write(2, b + sizeof b - n, n);
	(void)!write(2, "\n", 1);
	_exit(code);
}

static void say(const char *s) { (void)!write(2, s, strlen(s)); }

/* init.krun's mount_filesystems (libkrun 1.18+: EBUSY is not a failure).
 * Any other failure: "Couldn't mount filesystems, bailing out", and init
 * exits without setting an exit code. */
static bool init_mounts(void)
{
	static const struct { const char *src, *dst, *type; unsigned long flags; const char *data; bool mkdir_first; } m[] = {
		{ "devtmpfs", "/dev", "devtmpfs", MS_RELATIME, NULL, false },
		{ "proc", "/proc", "proc", MS_NODEV | MS_NOEXEC | MS_NOSUID | MS_RELATIME, NULL, false },
		{ "sysfs", "/sys", "sysfs", MS_NODEV | MS_NOEXEC | MS_NOSUID | MS_RELATIME, NULL, false },
		{ "cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NODEV | MS_NOEXEC | MS_NOSUID | MS_RELATIME, NULL, false },
		{ "devpts", "/dev/pts", "devpts", MS_NOEXEC | MS_NOSUID | MS_RELATIME, NULL, true },
		{ "tmpfs", "/dev/shm", "tmpfs", MS_NOEXEC | MS_NOSUID | MS_RELATIME, NULL, true },
	};
	const char *dirs[] = { "/dev", "/proc", "/sys" };
	for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++)
		if (mkdir(dirs[i], 0755) && errno != EEXIST) return false;
	for (size_t i = 0; i < sizeof m / sizeof *m; i++) {
		if (m[i].mkdir_first && mkdir(m[i].dst, 0755) && errno != EEXIST) return false;
		if (mount(m[i].src, m[i].dst, m[i].type, m[i].flags, m[i].data) && errno != EBUSY) return false;
	}
	if (symlink("/proc/self/fd", "/dev/fd") && errno != EEXIST) return false;
	return true;
}

/* Formats "LISTEN_PID=<pid>" into b (async-signal-safe). */
static char *listen_pid(char *b, size_t n, pid_t pid)
{
	char d[16]; int k = 0;
	do d[k++] = (char)('0' + pid % 10); while ((pid /= 10) && k < 15);
	size_t off = strlen(strcpy(b, "LISTEN_PID="));
	while (k && off < n - 1) b[off++] = d[--k];
	b[off] = 0;
	return b;
}

/* The guest's init (PID 1 of the guest's PID namespace), standing in for
 * libkrun's init.krun: only async-signal-safe calls from here. */
static void guest_init(struct ctx *c, const int *fds, int n, int console, int gate, int nic, int code, char *const argv[], char *const envp[])
{
	sigset_t none;
	char b;
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	for (int s = 1; s < NSIG; s++) sigaction(s, &dfl, NULL); /* drop the Go runtime's handlers */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	prctl(PR_SET_PDEATHSIG, SIGKILL); /* the guest dies with its VMM */
	while (read(gate, &b, 1) < 0 && errno == EINTR) {} /* EOF: the parent has logged our pid */
	if (nic >= 0) guest_nic(c, nic); /* before the root changes: /dev/net/tun is the host's */
	/* A slave, not private: as with virtio-fs, what the host mounts under the
	 * guest root later (a joining container's rootfs) shows up in the guest,
	 * and nothing mounted here propagates back to the host. */
	if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL)) die("make mounts slaves", 125);
	if (mount(c->root, c->root, NULL, MS_BIND | MS_REC, NULL)) die("bind mount root", 125);
	if (chdir(c->root)) die("chdir root", 125);
	if (syscall(SYS_pivot_root, ".", ".") == 0) {
		if (umount2(".", MNT_DETACH)) die("detach old root", 125);
	} else if (chroot(".")) {
		die("pivot_root and chroot", 125);
	}
	if (chdir("/")) die("chdir /", 125);
	/* init.krun's stdio is the console (hvc0). */
	if (console >= 0 && (dup2(console, 1) < 0 || dup2(console, 2) < 0)) die("console", 125);
	if (!init_mounts()) {
		say("Couldn't mount filesystems, bailing out\n");
		_exit(254); /* exit(-2): no exit code set */
	}
	/* init.krun (1.17+): mount(NULL, "/", NULL, MS_REC | MS_SHARED, NULL). */
	if (mount(NULL, "/", NULL, MS_REC | MS_SHARED, NULL)) _exit(255);
	if (c->workdir && chdir(c->workdir)) die("chdir workdir", 125);
	int tmp[MAXPORTS];
	for (int i = 0; i < n; i++)
		if ((tmp[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3 + n)) < 0) die("move listen fd", 125);
	for (int i = 0; i < n; i++)
		if (dup2(tmp[i], 3 + i) < 0) die("dup2 listen fd", 125); /* dup2 clears FD_CLOEXEC */
	/* The workload goes once init has closed its copies of the sockets:
	 * then they close when the workload closes them, as libkrun's host
	 * socket stops answering when the guest does not listen. */
	int held[2];
	if (pipe2(held, O_CLOEXEC)) die("pipe", 125);
	pid_t pid = fork();
	if (pid < 0) _exit(125);
	if (pid == 0) {
		/* The workload: init.krun's child. LISTEN_PID is its own pid. */
		static char lp[32];
		close(held[1]);
		while (read(held[0], &b, 1) < 0 && errno == EINTR) {}
		for (int i = 0; envp[i]; i++)
			if (strncmp(envp[i], "LISTEN_PID=", 11) == 0) ((char **)envp)[i] = listen_pid(lp, sizeof lp, getpid());
		close(code);
		execve(argv[0], argv, envp);
		die(argv[0], errno == ENOENT ? 127 : 126);
	}
	/* Only the workload holds the listening sockets: init closes every
	 * copy it has (it does not exec, so close-on-exec does nothing here). */
	for (int i = 0; i < n; i++) {
		close(3 + i);
		close(tmp[i]);
		if (fds[i] >= 3 + n) close(fds[i]);
	}
	close(held[1]);
	close(held[0]);
	int st = 0;
	pid_t w;
	/* As PID 1, init reaps whatever ends up with it, until its child is done. */
	while ((w = waitpid(-1, &st, 0)) != pid)
		if (w < 0 && errno != EINTR) _exit(0);
	int32_t out[2] = { WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), WIFSIGNALED(st) };
	(void)!write(code, out, sizeof out); /* libkrun's init: the virtio-fs exit-code ioctl */
	_exit(0);
}

static bool overridden(const char *kv)
{
	static const char *const keys[] = { "LISTEN_FDS=", "LISTEN_PID=", "LISTEN_FDNAMES=", "BOXLITE_VSOCK_PORTS=", "BOXLITE_TEST_DOUBLE=", "BOXLITE_VSOCK_CONNECTOR_FD=", NULL };
	for (int i = 0; keys[i]; i++) if (strncmp(kv, keys[i], strlen(keys[i])) == 0) return true;
	return false;
}

/* The VMM's side of guest-initiated vsock connections (see krun_start_enter). */
struct connector_arg { struct ctx *c; int sock; };

static void *connector(void *arg)
{
	struct connector_arg *a = arg;
	for (;;) {
		uint32_t port;
		ssize_t r = recv(a->sock, &port, sizeof port, 0);
		if (r < 0 && errno == EINTR) continue;
		if (r != sizeof port) return NULL; /* the workload is gone */
		const char *path = NULL;
		for (int i = 0; i < a->c->nports; i++)
			if (!a->c->ports[i].listen && a->c->ports[i].port == port) path = a->c->ports[i].path;
		struct jl j; jl_begin(&j, "vsock_connect"); jl_uint(&j, "port", port); jl_str(&j, "filepath", path);
		int fd = -1, pair[2];
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		if (path && strlen(path) < sizeof sa.sun_path) {
			strcpy(sa.sun_path, path);
			fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
			if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa)) { jl_str(&j, "error", strerror(errno)); close(fd); fd = -1; }
		}
		if (fd < 0 && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0) { close(pair[1]); fd = pair[0]; }
		jl_bool(&j, "connected", path != NULL && fd >= 0);
		jl_write(&j);
		if (fd < 0) continue;
		char b = 0;
		struct iovec iov = { &b, 1 };
		union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } u;
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
		struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET; cm->cmsg_type = SCM_RIGHTS; cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof fd);
		(void)!sendmsg(a->sock, &msg, 0);
		close(fd);
	}
}

/* ---- the kernel command line, and what the guest kernel makes of it ---- */

/* libkrun (x86_64): DEFAULT_KERNEL_CMDLINE, CMDLINE_MAX_SIZE. */
static const char default_cmdline[] = "reboot=k panic=-1 panic_print=0 nomodule console=hvc0 rootfstype=virtiofs rw quiet no-kvmapf";
#define CMDLINE_MAX 0x10000
/* The guest kernel's CONFIG_INIT_ENV_ARG_LIMIT (libkrunfw's and the net
 * kernel's config): MAX_INIT_ARGS and MAX_INIT_ENVS of init/main.c. */
#define MAX_INIT_ARGS 32
#define MAX_INIT_ENVS 32

/* init's argv and envp as init/main.c builds them. */
struct kinit {
	const char *argv[MAX_INIT_ARGS + 2];
	const char *envp[MAX_INIT_ENVS + 2];
	const char *panic_kind, *panic_param;
};

/* unknown_bootoption(): an unknown word or name=value before "--". */
static void kinit_unknown(struct kinit *k, const char *param)
{
	const char *eq = strchr(param, '=');
	size_t len = eq ? (size_t)(eq - param) : strlen(param);
	if (memchr(param, '.', len)) return; /* "unused module parameter" */
	if (k->panic_kind) return;
	unsigned i;
	if (eq) {
		for (i = 0; k->envp[i]; i++) {
			if (i == MAX_INIT_ENVS) { k->panic_kind = "env"; k->panic_param = param; }
			if (!strncmp(param, k->envp[i], len + 1)) break;
		}
		k->envp[i] = param;
	} else {
		for (i = 0; k->argv[i]; i++)
			if (i == MAX_INIT_ARGS) { k->panic_kind = "init"; k->panic_param = param; }
		k->argv[i] = param;
	}
}

/* set_init_arg(): an argument after "--". */
static void kinit_arg(struct kinit *k, const char *param)
{
	if (k->panic_kind) return;
	unsigned i;
	for (i = 0; k->argv[i]; i++)
		if (i == MAX_INIT_ARGS) { k->panic_kind = "init"; k->panic_param = param; return; }
	k->argv[i] = param;
}

/* Appends " <s>" (quoted: "<s>") to the command line. */
static void cmdline_add(struct jl *cl, const char *s, bool quoted)
{
	jl_s(cl, " ");
	if (quoted) jl_s(cl, "\"");
	jl_s(cl, s);
	if (quoted) jl_s(cl, "\"");
}

/* Where libkrun would panic building the command line (Cmdline::insert_str
 * rejects a byte outside ' '..'~' and overflow; libkrun .unwrap()s it), or
 * NULL. */
static const char *cmdline_panic(const struct jl *cl, char *why, size_t n)
{
	for (size_t i = 0; i < cl->n; i++) {
		unsigned char ch = (unsigned char)cl->b[i];
		if (ch < ' ' || ch > '~') {
			snprintf(why, n, "InvalidAscii: byte 0x%02x at offset %zu of the kernel command line", ch, i);
			return why;
		}
	}
	if (cl->n + 1 > CMDLINE_MAX) {
		snprintf(why, n, "TooLarge: the kernel command line is %zu bytes, over CMDLINE_MAX_SIZE (%d)", cl->n, CMDLINE_MAX);
		return why;
	}
	return NULL;
}

/* ---- krun_start_enter ---- */

int32_t krun_start_enter(uint32_t id)
{
	/* As libkrun: the calling thread is renamed first thing. */
	const char *hn = getenv("HOSTNAME");
	char prname[64];
	snprintf(prname, sizeof prname, hn ? "VM:%s" : "libkrun VM", hn);
	prctl(PR_SET_NAME, prname);

	struct jl j; jl_begin(&j, "krun_start_enter");
	int32_t ret;
	struct ctx *c = get(&j, id, "krun_start_enter", &ret);
	if (c && (!c->root || !c->exec || guest_sock < 0)) ret = -EINVAL;
	if (!c || ret) return jl_done(&j, ret);

	/* TSI: libkrun 1.17+ VsockConfig (implicit: on without a network
	 * device); before 1.17, on without a network device. With TSI the
	 * command line gets "tsi_hijack" ("tsi_hijack_unix" for AF_UNIX). */
	bool tsi_inet = !c->tap, tsi_unix = false;
#if DOUBLE_VERSION >= 11700
	if (c->vsock == VSOCK_DISABLED) tsi_inet = false;
	if (c->vsock == VSOCK_EXPLICIT) {
		tsi_inet = c->tsi_features & KRUN_TSI_HIJACK_INET;
		tsi_unix = c->tsi_features & KRUN_TSI_HIJACK_UNIX;
	}
#endif
	jl_bool(&j, "tsi", tsi_inet);

	/* The command line as libkrun builds it (without the
	 * virtio_mmio.device= words of the devices, which the double does not
	 * model): prolog, KRUN_* and the environment, TSI, then the arguments.
	 * And what the guest kernel gives init from it. */
	size_t na = 0, ne = 0;
	char **env = c->envp ? c->envp : environ;
	while (c->argv[na]) na++;
	while (env[ne]) ne++;
	struct jl cl = { 0 };
	jl_s(&cl, default_cmdline);
	jl_s(&cl, " init=/init.krun");
	struct kinit k = { .argv = { "init" }, .envp = { "HOME=/", "TERM=linux" } };
	char *krun_init = NULL, *krun_wd = NULL;
	if (asprintf(&krun_init, "KRUN_INIT=%s", c->exec) < 0 || (c->workdir && asprintf(&krun_wd, "KRUN_WORKDIR=%s", c->workdir) < 0)) abort();
	cmdline_add(&cl, krun_init, false);
	kinit_unknown(&k, krun_init);
	if (krun_wd) { cmdline_add(&cl, krun_wd, false); kinit_unknown(&k, krun_wd); }
	for (size_t i = 0; i < ne; i++) { cmdline_add(&cl, env[i], true); kinit_unknown(&k, env[i]); }
	if (tsi_inet) { cmdline_add(&cl, "tsi_hijack", false); if (!krunfw_tsi) kinit_unknown(&k, "tsi_hijack"); }
	if (tsi_unix) { cmdline_add(&cl, "tsi_hijack_unix", false); if (!krunfw_tsi) kinit_unknown(&k, "tsi_hijack_unix"); }
	jl_s(&cl, " --");
	for (size_t i = 0; i < na; i++) { cmdline_add(&cl, c->argv[i], true); kinit_arg(&k, c->argv[i]); }
	char why[160];
	if (cmdline_panic(&cl, why, sizeof why)) {
		fprintf(stderr, "libkrun-double: libkrun would panic in krun_start_enter here (builder.rs: Cmdline::insert_str(...).unwrap()): %s; the VMM aborts\n", why);
		jl_str(&j, "panic", why);
		jl_done(&j, 0);
		abort();
	}
	if (k.panic_kind) {
		/* The guest kernel panics in start_kernel(), before any console
		 * is up: nothing is shown, no exit code is set, and libkrun
		 * (reboot=k panic=-1) exits 0. Only the call log says why. */
		char msg[256];
		snprintf(msg, sizeof msg, "Too many boot %s vars at `%s'", k.panic_kind, k.panic_param);
		jl_str(&j, "guest_kernel_panic", msg);
		jl_done(&j, 0);
		jl_begin(&j, "workload_exit");
		jl_bool(&j, "exit_code_set", false); jl_int(&j, "status", 0);
		jl_write(&j);
		_exit(0);
	}

	int fds[MAXPORTS + 2], n = 0, console = -1;
	char ports[MAXPORTS * 11 + 32] = "BOXLITE_VSOCK_PORTS=", nfds[32];
	for (int i = 0; i < c->nports && !ret; i++) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		if (!c->ports[i].listen) continue; /* guest-initiated ports are not bridged */
		if (strlen(c->ports[i].path) >= sizeof sa.sun_path) { ret = -ENAMETOOLONG; break; }
		strcpy(sa.sun_path, c->ports[i].path);
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) { ret = -errno; break; }
		/* As libkrun's vsock muxer: a port whose socket cannot be bound is
		 * only warned about, and the VM runs without it. */
		if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 128)) {
			fprintf(stderr, "libkrun-double: WARN: failed to create listening proxy at %s: %s\n", sa.sun_path, strerror(errno));
			close(fd);
			continue;
		}
		fds[n++] = fd;
		snprintf(ports + strlen(ports), sizeof ports - strlen(ports), "%s%u", n > 1 ? "," : "", c->ports[i].port);
	}
	/* Ports the guest connects to (listen=false): as libkrun connects to the
	 * port's host socket when the guest connects, the workload asks over a
	 * connector socket (fd 3+LISTEN_FDS, named by BOXLITE_VSOCK_CONNECTOR_FD),
	 * sending the port number; the VMM connects and hands the connected
	 * socket back (one whose peer is gone if the host socket refuses, as the
	 * guest then sees its connection reset). */
	int cn[2] = { -1, -1 }, nlisten = n;
	char connfd[48] = "";
	for (int i = 0; i < c->nports && !ret && cn[0] < 0; i++) {
		if (c->ports[i].listen) continue;
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, cn)) { ret = -errno; break; }
		fds[n++] = cn[1];
		snprintf(connfd, sizeof connfd, "BOXLITE_VSOCK_CONNECTOR_FD=%d", 3 + nlisten);
	}
	if (!ret && c->console && (console = open(c->console, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600)) < 0) ret = -errno;

	/* argv = what the kernel gives init, with init.krun's KRUN_INIT as
	 * argv[0]; env = the kernel's envp for init + the socket-activation
	 * vars (LISTEN_PID is set by init to the workload's pid). */
	size_t kargc = 0, kenvc = 0, envk = 0;
	while (k.argv[kargc]) kargc++;
	while (k.envp[kenvc]) kenvc++;
	char **ev = xrealloc(NULL, (kenvc + 6) * sizeof(*ev));
	for (size_t i = 0; i < kenvc; i++) if (!overridden(k.envp[i])) ev[envk++] = (char *)k.envp[i];
	snprintf(nfds, sizeof nfds, "LISTEN_FDS=%d", nlisten);
	ev[envk++] = nfds; ev[envk++] = "LISTEN_PID=0"; ev[envk++] = ports; ev[envk++] = "BOXLITE_TEST_DOUBLE=1";
	if (connfd[0]) ev[envk++] = connfd;
	ev[envk] = NULL;
	k.argv[0] = c->exec;

	int nic[2] = { -1, -1 }, podtap = -1;
	if (!ret && c->tap) {
		if ((podtap = tap_open(c->tap)) < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, nic)) {
			ret = -errno;
			fprintf(stderr, "libkrun-double: TAP %s: %s\n", c->tap, strerror(errno));
		}
	}
	int32_t pid = -1;
	if (!ret) {
		/* The configuration and the fds go to the guest helper. */
		static char buf[GUEST_MSG_MAX];
		struct guest_msg h = { n, console >= 0, nic[1] >= 0, !tsi_inet && !c->tap, (int32_t)kargc, (int32_t)envk, { 0 } };
		memcpy(h.mac, c->mac, 6);
		size_t off = sizeof h;
		memcpy(buf, &h, sizeof h);
		const char *wd = c->workdir ? c->workdir : "";
		const char *strs[2] = { c->root, wd };
		bool fits = true;
		for (size_t i = 0; i < 2 + kargc + envk && fits; i++) {
			const char *v = i < 2 ? strs[i] : i < 2 + kargc ? k.argv[i - 2] : ev[i - 2 - kargc];
			size_t l = strlen(v) + 1;
			if (off + l > sizeof buf) fits = false;
			else { memcpy(buf + off, v, l); off += l; }
		}
		int sendfds[MAXPORTS + 2], ns = 0;
		for (int i = 0; i < n; i++) sendfds[ns++] = fds[i];
		if (console >= 0) sendfds[ns++] = console;
		if (nic[1] >= 0) sendfds[ns++] = nic[1];
		union { struct cmsghdr h; char b[CMSG_SPACE(sizeof sendfds)]; } u;
		memset(&u, 0, sizeof u);
		struct iovec iov = { buf, off };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
		if (ns) {
			msg.msg_control = u.b;
			msg.msg_controllen = CMSG_SPACE(ns * sizeof(int));
			struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
			cm->cmsg_level = SOL_SOCKET; cm->cmsg_type = SCM_RIGHTS; cm->cmsg_len = CMSG_LEN(ns * sizeof(int));
			memcpy(CMSG_DATA(cm), sendfds, ns * sizeof(int));
		}
		if (!fits) ret = -E2BIG;
		else if (sendmsg(guest_sock, &msg, 0) < 0 || recv(guest_sock, &pid, sizeof pid, 0) != sizeof pid) ret = -EIO;
		else if (pid < 0) ret = pid;
	}
	for (int i = 0; i < n; i++) close(fds[i]); /* the guest holds them now */
	if (console >= 0) close(console);
	if (nic[1] >= 0) close(nic[1]);
	free(ev);
	if (ret) {
		if (podtap >= 0) close(podtap);
		if (nic[0] >= 0) close(nic[0]);
		if (cn[0] >= 0) close(cn[0]);
		fprintf(stderr, "libkrun-double: krun_start_enter: %s\n", strerror(-ret));
		return jl_done(&j, ret);
	}
	jl_strv(&j, "workload_argv", k.argv);
	jl_int(&j, "init_pid", pid);
	jl_done(&j, 0);
	(void)!write(guest_sock, "g", 1); /* let the guest go */
	if (cn[0] >= 0) {
		static struct connector_arg ca;
		pthread_t th;
		ca.c = c; ca.sock = cn[0];
		if (pthread_create(&th, NULL, connector, &ca) != 0)
			fprintf(stderr, "libkrun-double: vsock connector thread: %s\n", strerror(errno));
	}
	if (podtap >= 0) {
		/* The guest's eth0 comes back from the guest (nothing if it died). */
		static int pair[2];
		pthread_t th;
		pair[0] = podtap;
		pair[1] = recv_fd(nic[0]);
		close(nic[0]);
		jl_begin(&j, "net_device");
		jl_str(&j, "tap_name", c->tap); jl_bool(&j, "guest_eth0", pair[1] >= 0);
		jl_write(&j);
		if (pair[1] >= 0 && pthread_create(&th, NULL, pump, pair) != 0)
			fprintf(stderr, "libkrun-double: network thread: %s\n", strerror(errno));
	}

	/* The guest ends: the exit code its init set (if any), then the helper
	 * exits. libkrun _exit()s with that code, or 0 when none was set. */
	struct guest_exit ge = { 0, 0, 0 };
	while (recv(guest_sock, &ge, sizeof ge, 0) < 0 && errno == EINTR) {}
	int hst;
	while (waitpid(guest_pid, &hst, 0) < 0 && errno == EINTR) {}
	int code = ge.set ? ge.code : 0;
	jl_begin(&j, "workload_exit");
	jl_bool(&j, "exit_code_set", ge.set); jl_int(&j, "status", code); jl_bool(&j, "signaled", ge.signaled);
	jl_write(&j);
	_exit(code);
}
