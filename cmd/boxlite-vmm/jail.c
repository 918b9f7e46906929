/*
 * The VMM's jail. libkrun's virtio-fs serves whatever the VMM process can
 * reach, follows a guest's ".." above the shared directory, and opens device
 * nodes the guest made (libkrun's README: guest and VMM are one security
 * context; isolate the VMM). So with -jail DIR, before the Go runtime starts
 * (this is a constructor of the executable, run while the process is one
 * thread, as runc's nsexec is), boxlite-vmm:
 *
 *   1. makes its mount tree private (runtime/vmm starts it in new mount, PID,
 *      IPC and UTS namespaces, and in the pod's or a fresh network namespace);
 *   2. mounts, under DIR: DIR itself again nosuid,nodev; the guest root (-root,
 *      a path inside DIR) nosuid,nodev and shared (what the shim attaches under
 *      it later reaches the guest, see runtime/share); /proc, read-only, of
 *      its own PID namespace (libkrun's virtio-fs needs /proc/self/fd); and
 *      /dev/kvm (and /dev/net/tun with -net-tap) bound from the host;
 *   3. loads the kernel library (-krunfw) and libkrun (-libkrun), refuses the
 *      test double unless -allow-test-double, refuses a libkrun too old for
 *      the staged kernels (krunver.c), and creates the libkrun context
 *      (libkrun dlopens libkrunfw.so.5 in krun_create_ctx: before the pivot);
 *   4. pivot_root()s into DIR and drops the old root: the host's tree is gone;
 *   5. keeps only the capabilities libkrun's virtio-fs uses on behalf of the
 *      guest's root (boxlite_jail_caps), in every set, bounding set included,
 *      clears the ambient set, and sets no_new_privs.
 * Every thread the Go runtime and libkrun start later inherits all of it.
 * main.go then makes the remaining krun_* calls with paths inside the jail.
 *
 * Exit codes on failure (stderr says why): 2 usage, 3 libkrun not available,
 * 4 the test double without -allow-test-double, 5 a krun_* call failed, 6 the
 * kernel library cannot be loaded, 7 the jail cannot be set up, 8 libkrun is
 * too old for the staged kernels (or its version cannot be told well enough).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <linux/capability.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "jail.h"
#include "krunver.h"

struct boxlite_jail boxlite_jail;

/* What libkrun's passthrough file system does as the guest's root: make files
 * as the guest's users (setresuid/setresgid), chown, bypass permission bits
 * and ownership checks, keep setgid bits, set file capabilities. Not kept:
 * CAP_SYS_ADMIN (mounts; trusted.* xattrs), CAP_DAC_READ_SEARCH
 * (open_by_handle_at would reach any file of a shared file system),
 * CAP_MKNOD (device nodes; whiteouts need none since Linux 5.8),
 * CAP_NET_ADMIN (the pod's TAP is made owned by root, so attaching needs
 * none), CAP_SYS_PTRACE, CAP_KILL and the rest. */
const uint64_t boxlite_jail_caps =
	(1ULL << CAP_CHOWN) | (1ULL << CAP_DAC_OVERRIDE) | (1ULL << CAP_FOWNER) |
	(1ULL << CAP_FSETID) | (1ULL << CAP_SETGID) | (1ULL << CAP_SETUID) |
	(1ULL << CAP_SETFCAP);

static void die(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("boxlite-vmm: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	_exit(code);
}

/* The flags the jail needs, parsed as Go's flag package does for them. */
struct jailflags {
	const char *jail, *root, *libkrun, *krunfw, *net_tap;
	unsigned log_level;
	bool allow_double, probe;
};

static bool boolflag(const char *name)
{
	return strcmp(name, "probe") == 0 || strcmp(name, "allow-test-double") == 0 || strcmp(name, "no-tsi") == 0;
}

static void parse(int argc, char **argv, struct jailflags *f)
{
	f->libkrun = "libkrun.so.1";
	f->log_level = 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (a[0] != '-' || strcmp(a, "-") == 0) break;
		if (strcmp(a, "--") == 0) break;
		a += (a[1] == '-') ? 2 : 1;
		char name[64];
		const char *eq = strchr(a, '='), *val = NULL;
		size_t n = eq ? (size_t)(eq - a) : strlen(a);
		if (n >= sizeof name) continue;
		memcpy(name, a, n);
		name[n] = 0;
		if (eq) val = eq + 1;
		else if (!boolflag(name) && i + 1 < argc) val = argv[++i];
		if (strcmp(name, "jail") == 0) f->jail = val;
		else if (strcmp(name, "root") == 0) f->root = val;
		else if (strcmp(name, "libkrun") == 0) f->libkrun = val;
		else if (strcmp(name, "krunfw") == 0) f->krunfw = val;
		else if (strcmp(name, "net-tap") == 0) f->net_tap = val;
		else if (strcmp(name, "log-level") == 0 && val) f->log_level = (unsigned)strtoul(val, NULL, 10);
		else if (strcmp(name, "allow-test-double") == 0) f->allow_double = !val || strcmp(val, "true") == 0;
		else if (strcmp(name, "probe") == 0) f->probe = !val || strcmp(val, "true") == 0;
	}
}

static char *join(const char *a, const char *b)
{
	char *p;
	if (asprintf(&p, "%s/%s", a, b[0] == '/' ? b + 1 : b) < 0) die(7, "jail: out of memory");
	return p;
}

/* Mounts path on itself, then remounts that bind with flags. */
static void bind_self(const char *path, unsigned long flags)
{
	if (mount(path, path, NULL, MS_BIND, NULL))
		die(7, "jail: bind mount %s: %s", path, strerror(errno));
	if (mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | flags, NULL))
		die(7, "jail: remount %s nosuid,nodev: %s", path, strerror(errno));
}

/* Binds the host's device node src at dst (an empty file made for it): a
 * bind keeps the device usable under the nodev jail. */
static void bind_node(const char *src, const char *dst)
{
	int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) die(7, "jail: making %s: %s", dst, strerror(errno));
	close(fd);
	if (mount(src, dst, NULL, MS_BIND, NULL))
		die(7, "jail: bind mount %s on %s: %s", src, dst, strerror(errno));
}

static void mkdir_p(const char *path, mode_t mode)
{
	if (mkdir(path, mode) && errno != EEXIST) die(7, "jail: mkdir %s: %s", path, strerror(errno));
}

static void mounts(const struct jailflags *f)
{
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		die(7, "jail: making the mount tree private (was boxlite-vmm started in a mount namespace of its own?): %s", strerror(errno));
	bind_self(f->jail, MS_NOSUID | MS_NODEV);
	char *root = join(f->jail, f->root);
	bind_self(root, MS_NOSUID | MS_NODEV);
	if (mount(NULL, root, NULL, MS_SHARED, NULL))
		die(7, "jail: making %s shared: %s", root, strerror(errno));
	char *proc = join(f->jail, "proc");
	mkdir_p(proc, 0555);
	unsigned long pflags = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY;
	/* subset=pid (Linux 5.8) hides all but the processes; read-only either
	 * way, so nothing in /proc (sysrq-trigger, sys/, a process's mem) can
	 * be written through it. */
	if (mount("proc", proc, "proc", pflags, "subset=pid") && mount("proc", proc, "proc", pflags, NULL))
		die(7, "jail: mounting /proc: %s", strerror(errno));
	char *dev = join(f->jail, "dev");
	mkdir_p(dev, 0755);
	if (access("/dev/kvm", F_OK) == 0) bind_node("/dev/kvm", join(dev, "kvm"));
	if (f->net_tap && *f->net_tap) {
		mkdir_p(join(dev, "net"), 0755);
		bind_node("/dev/net/tun", join(dev, "net/tun"));
	}
}

static void load(const struct jailflags *f)
{
	if (f->krunfw && *f->krunfw && !dlopen(f->krunfw, RTLD_NOW | RTLD_LOCAL))
		die(6, "kernel library %s cannot be loaded: %s", f->krunfw, dlerror());
	void *h = dlopen(f->libkrun, RTLD_NOW | RTLD_LOCAL);
	if (!h)
		die(3, "libkrun is not available: %s; install libkrun (libkrun.so.1) from your distribution or build it, or set libkrun_path in /etc/boxlite/config.toml", dlerror());
	struct link_map *lm = NULL;
	const char *file = dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm ? lm->l_name : f->libkrun;
	boxlite_jail.libkrun_path = file;
	if (dlsym(h, "krun_test_double")) {
		if (!f->allow_double)
			die(4, "refusing %s (%s): it is the libkrun test double, which runs the workload as a host process, not in a VM; it is for tests only (pass -allow-test-double)", f->libkrun, file);
		boxlite_jail.test_double = 1;
		if (dlsym(h, "krun_test_engine_qemu"))
			fprintf(stderr, "boxlite-vmm: WARNING: %s is the emulated engine (tests only): QEMU software emulation standing in for libkrun + KVM\n", f->libkrun);
		else
			fprintf(stderr, "boxlite-vmm: WARNING: %s is the libkrun test double: the workload runs as a host process, not in a VM\n", f->libkrun);
	}
	struct boxlite_krunver v;
	boxlite_krunver_detect(h, &v);
	if (!v.supported) die(8, "unsupported libkrun %s: %s", file, v.problem);
	fprintf(stderr, "boxlite-vmm: libkrun %s (%s)\n", v.version, v.detection);
	int32_t (*set_log_level)(uint32_t) = (int32_t (*)(uint32_t))dlsym(h, "krun_set_log_level");
	int32_t (*create_ctx)(void) = (int32_t (*)(void))dlsym(h, "krun_create_ctx");
	if (!set_log_level || !create_ctx)
		die(3, "libkrun is not available: %s has no %s; install a libkrun (libkrun.so.1) that provides it", f->libkrun, set_log_level ? "krun_create_ctx" : "krun_set_log_level");
	int32_t r = set_log_level(f->log_level);
	if (r < 0) die(5, "krun_set_log_level: %s", strerror(-r));
	if ((r = create_ctx()) < 0) die(5, "krun_create_ctx: %s", strerror(-r));
	boxlite_jail.libkrun = h;
	boxlite_jail.ctx = r;
}

static void pivot(const struct jailflags *f)
{
	char cwd[PATH_MAX];
	const char *rel = "/";
	size_t n = strlen(f->jail);
	if (getcwd(cwd, sizeof cwd) && strncmp(cwd, f->jail, n) == 0 && (cwd[n] == '/' || cwd[n] == 0))
		rel = cwd[n] ? cwd + n : "/";
	if (chdir(f->jail)) die(7, "jail: chdir %s: %s", f->jail, strerror(errno));
	if (syscall(SYS_pivot_root, ".", ".")) die(7, "jail: pivot_root %s: %s", f->jail, strerror(errno));
	if (umount2(".", MNT_DETACH)) die(7, "jail: detaching the host's root: %s", strerror(errno));
	if (chdir("/") || chdir(rel)) die(7, "jail: chdir %s: %s", rel, strerror(errno));
}

static void confine(void)
{
	/* libkrun keeps an fd per guest inode: the soft limit goes to the hard
	 * one now, since raising it later would need CAP_SYS_RESOURCE. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	for (int c = 0; c <= 63; c++) {
		if (boxlite_jail_caps & (1ULL << c)) continue;
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) && errno != EINVAL)
			die(7, "jail: dropping capability %d from the bounding set: %s", c, strerror(errno));
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) && errno != EINVAL)
		die(7, "jail: clearing the ambient capabilities: %s", strerror(errno));
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof data);
	data[0].effective = data[0].permitted = (uint32_t)boxlite_jail_caps;
	data[1].effective = data[1].permitted = (uint32_t)(boxlite_jail_caps >> 32);
	if (syscall(SYS_capset, &hdr, data)) die(7, "jail: setting capabilities: %s", strerror(errno));
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) die(7, "jail: no_new_privs: %s", strerror(errno));
}

__attribute__((constructor)) static void jail_init(int argc, char **argv, char **envp)
{
	(void)envp;
	struct jailflags f;
	memset(&f, 0, sizeof f);
	parse(argc, argv, &f);
	if (!f.jail || f.probe) return; /* main.go refuses to start a VM without -jail */
	if (f.jail[0] != '/') die(2, "-jail %s: not an absolute path", f.jail);
	if (!f.root || f.root[0] != '/') die(2, "-root must be an absolute path inside the jail (-jail %s)", f.jail);
	mounts(&f);
	load(&f);
	pivot(&f);
	confine();
	boxlite_jail.active = 1;
}
