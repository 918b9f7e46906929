/*
 * init.krun of the emulated engine (test/libkrun-qemu): the guest's PID 1,
 * doing what libkrun's init (init/init.c, libkrun 1.17-1.19, generic
 * build) does before and after the workload, so that the workload finds the
 * guest as it finds it under libkrun:
 *
 *   1. mounts devtmpfs /dev, proc /proc, sysfs /sys, cgroup2 /sys/fs/cgroup,
 *      devpts /dev/pts and tmpfs /dev/shm (with libkrun's flags; EBUSY is
 *      fine, any other failure ends init: "Couldn't mount filesystems,
 *      bailing out", exit -2, no status reported), best-effort chmod 0666
 *      /dev/kvm, and links /dev/fd to /proc/self/fd;
 *   2. makes / rshared (failure: exit -1);
 *   3. setsid, the console as controlling terminal, lo up, and with
 *      tsi_hijack on the command line (before "--") dummy0 up with
 *      203.0.113.1/24, as 1.19 does (ENODEV ignored);
 *   4. honours KRUN_HOME, KRUN_TERM, HOSTNAME (sethostname, default
 *      "localhost"), KRUN_RLIMITS ("ID=CUR:MAX,..."), KRUN_WORKDIR (chdir),
 *      KRUN_INIT (argv[0] of the workload; the rest of argv is init's own,
 *      so the kernel's bare words before "--" and everything after it reach
 *      the workload, as with libkrun; default /bin/sh) and KRUN_INIT_PID1
 *      (exec the workload as PID 1: nothing is reported then);
 *   5. forks the workload (its stdin/stdout/stderr move to the virtio ports
 *      named krun-stdin, krun-stdout, krun-stderr where they exist; exec
 *      failure: 127 for ENOENT, else 126; fork failure: 125), waits for it,
 *      ignoring other children, and reports its status (the exit code, or
 *      128+signal) when / is virtio-fs, then sync() and reboot().
 *
 * The one difference: libkrun's init reports the status to the VMM with an
 * ioctl on the root virtio-fs (0x7602), which only libkrun's file server
 * understands; this one writes "exit <status>\n" on the virtio serial port
 * named krun-exit, which the engine's launcher reads. It also writes
 * "start <uptime>\n" there once the file systems are mounted (the uptime is
 * the guest's CLOCK_BOOTTIME, in seconds): the launcher then binds the host
 * sockets of the vsock ports, as libkrun binds them when the guest activates
 * its vsock device, and logs when the kernel was entered and init started
 * (its timing line, see libkrun_qemu.c). Not done: /.krun_config.json (KRUN_CONFIG),
 * KRUN_DHCP and KRUN_BLOCK_ROOT_* (boxlite uses none of them), the clock
 * sync of timesync builds.
 *
 * Built static (gcc -static): it runs before the guest root has a libc.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define VIRTIOFS_MAGIC 0x65735546
#define EXIT_PORT "krun-exit"

static char default_init[] = "/bin/sh";

static int mount_filesystems(void)
{
	const char *const level1[] = { "/dev", "/proc", "/sys" };
	const char *const level2[] = { "/dev/pts", "/dev/shm" };
	for (int i = 0; i < 3; i++) {
		if (mkdir(level1[i], 0755) < 0 && errno != EEXIST) {
			printf("Error creating directory (%s)\n", level1[i]);
			return -1;
		}
	}
	if (mount("devtmpfs", "/dev", "devtmpfs", MS_RELATIME, NULL) < 0 && errno != EBUSY) {
		perror("mount(/dev)");
		return -1;
	}
	if (chmod("/dev/kvm", 0666) < 0 && errno != ENOENT)
		perror("chmod(/dev/kvm)");
	if (mount("proc", "/proc", "proc", MS_NODEV | MS_NOEXEC | MS_NOSUID | MS_RELATIME, NULL) < 0 && errno != EBUSY) {
		perror("mount(/proc)");
		return -1;
	}
	if (mount("sysfs", "/sys", "sysfs", MS_NODEV | MS_NOEXEC | MS_NOSUID | MS_RELATIME, NULL) < 0 && errno != EBUSY) {
		perror("mount(/sys)");
		return -1;
	}
	if (mount("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NODEV | MS_NOEXEC | MS_NOSUID | MS_RELATIME, NULL) < 0 && errno != EBUSY) {
		perror("mount(/sys/fs/cgroup)");
		return -1;
	}
	for (int i = 0; i < 2; i++) {
		if (mkdir(level2[i], 0755) < 0 && errno != EEXIST) {
			printf("Error creating directory (%s)\n", level2[i]);
			return -1;
		}
	}
	if (mount("devpts", "/dev/pts", "devpts", MS_NOEXEC | MS_NOSUID | MS_RELATIME, NULL) < 0 && errno != EBUSY) {
		perror("mount(/dev/pts)");
		return -1;
	}
	if (mount("tmpfs", "/dev/shm", "tmpfs", MS_NOEXEC | MS_NOSUID | MS_RELATIME, NULL) < 0 && errno != EBUSY) {
		perror("mount(/dev/shm)");
		return -1;
	}
	(void)!symlink("/proc/self/fd", "/dev/fd"); /* may exist already */
	return 0;
}

/* The /dev path of the virtio port called name ("" if there is none). */
static bool find_port(const char *name, char *dev, size_t n)
{
	DIR *d = opendir("/sys/class/virtio-ports");
	if (!d) return false;
	struct dirent *e;
	bool found = false;
	while (!found && (e = readdir(d))) {
		char path[PATH_MAX], buf[256];
		if (e->d_name[0] == '.') continue;
		snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
		FILE *f = fopen(path, "r");
		if (!f) continue;
		if (fgets(buf, sizeof buf, f)) {
			buf[strcspn(buf, "\n")] = 0;
			if (strcmp(buf, name) == 0) {
				snprintf(dev, n, "/dev/%s", e->d_name);
				found = true;
			}
		}
		fclose(f);
	}
	closedir(d);
	return found;
}

/* The krun-exit port, opened once (close-on-exec: the workload does not get
 * it). The host announces its ports while the guest boots: wait a little. */
static int exit_port(void)
{
	static int fd = -2;
	if (fd != -2) return fd;
	char dev[PATH_MAX];
	fd = -1;
	for (int i = 0; i < 200; i++) {
		if (find_port(EXIT_PORT, dev, sizeof dev)) {
			if ((fd = open(dev, O_WRONLY | O_CLOEXEC)) < 0)
				printf("init.krun: opening %s (%s): %s\n", dev, EXIT_PORT, strerror(errno));
			return fd;
		}
		nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
	}
	printf("init.krun: no virtio port named %s: the workload's exit status cannot be reported\n", EXIT_PORT);
	return fd;
}

static void report(const char *msg)
{
	int fd = exit_port();
	if (fd >= 0 && write(fd, msg, strlen(msg)) != (ssize_t)strlen(msg))
		printf("init.krun: writing to %s: %s\n", EXIT_PORT, strerror(errno));
}

static int is_virtiofs(const char *path)
{
	struct statfs fs;
	if (statfs(path, &fs) != 0) {
		perror("statfs");
		return -1;
	}
	return fs.f_type == VIRTIOFS_MAGIC;
}

/* libkrun's set_exit_code, with the port for the ioctl. */
static void set_exit_code(int code)
{
	int v = is_virtiofs("/");
	if (v < 0) printf("Warning: Could not determine filesystem type for root\n");
	if (v == 0) return;
	char msg[32];
	snprintf(msg, sizeof msg, "exit %d\n", code);
	report(msg);
}

static void set_rlimits(const char *rlimits)
{
	char *item = (char *)rlimits;
	for (;;) {
		unsigned long long id = strtoull(item, &item, 10);
		if (id == ULLONG_MAX) {
			printf("Invalid rlimit ID\n");
			break;
		}
		item++;
		unsigned long long cur = strtoull(item, &item, 10);
		item++;
		unsigned long long max = strtoull(item, &item, 10);
		struct rlimit rl = { cur, max };
		if (setrlimit((int)id, &rl) != 0) printf("Error setting rlimit for ID=%lld\n", id);
		if (*item == 0) break;
		item++;
	}
}

static bool tsi_enabled(void)
{
	char buf[65536];
	int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		perror("open(/proc/cmdline)");
		return false;
	}
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0) return false;
	buf[n] = 0;
	for (char *save = NULL, *t = strtok_r(buf, " \n", &save); t; t = strtok_r(NULL, " \n", &save)) {
		if (strcmp(t, "--") == 0) break;
		if (strcmp(t, "tsi_hijack") == 0) return true;
	}
	return false;
}

static int enable_dummy_interface(void)
{
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", "dummy0");
	int s = socket(PF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		perror("dummy interface socket");
		return -1;
	}
	int ret = -1;
	ifr.ifr_flags = IFF_UP;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) {
		if (errno == ENODEV) ret = 0; /* not in this kernel */
		else perror("dummy interface up");
		goto out;
	}
	struct sockaddr_in *a = (struct sockaddr_in *)&ifr.ifr_addr;
	a->sin_family = AF_INET;
	inet_pton(AF_INET, "203.0.113.1", &a->sin_addr);
	if (ioctl(s, SIOCSIFADDR, &ifr) < 0) {
		perror("dummy interface address");
		goto out;
	}
	struct sockaddr_in *m = (struct sockaddr_in *)&ifr.ifr_netmask;
	m->sin_family = AF_INET;
	inet_pton(AF_INET, "255.255.255.0", &m->sin_addr);
	if (ioctl(s, SIOCSIFNETMASK, &ifr) < 0) {
		perror("dummy interface mask");
		goto out;
	}
	ret = 0;
out:
	close(s);
	return ret;
}

static void reopen_fd(int fd, const char *path, int flags)
{
	int n = open(path, flags);
	if (n < 0) {
		printf("Failed to open '%s': %s\n", path, strerror(errno));
		return;
	}
	if (dup2(n, fd) < 0) perror("dup2");
	close(n);
}

/* As libkrun's: the workload's child fails (125) without a ports directory. */
static int setup_redirects(void)
{
	DIR *d = opendir("/sys/class/virtio-ports");
	if (!d) {
		printf("Unable to open ports directory!\n");
		return -1;
	}
	closedir(d);
	static const struct { const char *name; int fd, flags; } ports[] = {
		{ "krun-stdin", 0, O_RDONLY }, { "krun-stdout", 1, O_WRONLY }, { "krun-stderr", 2, O_WRONLY },
	};
	for (size_t i = 0; i < sizeof ports / sizeof ports[0]; i++) {
		char dev[PATH_MAX];
		if (find_port(ports[i].name, dev, sizeof dev)) reopen_fd(ports[i].fd, dev, ports[i].flags);
	}
	return 0;
}

int main(int argc, char **argv)
{
	(void)argc;
	if (mount_filesystems() < 0) {
		printf("Couldn't mount filesystems, bailing out\n");
		exit(-2);
	}
	struct timespec up;
	char start[64] = "start\n";
	if (clock_gettime(CLOCK_BOOTTIME, &up) == 0)
		snprintf(start, sizeof start, "start %lld.%09ld\n", (long long)up.tv_sec, up.tv_nsec);
	report(start);
	if (mount(NULL, "/", NULL, MS_REC | MS_SHARED, NULL) < 0) {
		perror("Couldn't set shared propagation on the root mount");
		exit(-1);
	}
	setsid();
	ioctl(0, TIOCSCTTY, 1);

	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s >= 0) {
		struct ifreq ifr;
		memset(&ifr, 0, sizeof ifr);
		strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
		ifr.ifr_flags |= IFF_UP;
		ioctl(s, SIOCSIFFLAGS, &ifr);
		close(s);
	}
	if (tsi_enabled() && enable_dummy_interface() < 0)
		printf("Warning: Couldn't enable dummy interface\n");

	const char *v;
	if ((v = getenv("KRUN_HOME"))) setenv("HOME", v, 1);
	if ((v = getenv("KRUN_TERM"))) setenv("TERM", v, 1);
	v = getenv("HOSTNAME");
	if (!v) v = "localhost";
	sethostname(v, strlen(v));
	if ((v = getenv("KRUN_RLIMITS"))) set_rlimits(v);
	if ((v = getenv("KRUN_WORKDIR"))) (void)!chdir(v);

	char **exec_argv = argv;
	if ((v = getenv("KRUN_INIT"))) exec_argv[0] = strdup(v);
	else exec_argv[0] = default_init;
	bool pid1 = (v = getenv("KRUN_INIT_PID1")) && *v == '1';

	pid_t child = pid1 ? 0 : fork();
	if (child < 0) {
		perror("fork");
		set_exit_code(125);
		exit(125);
	}
	if (child == 0) {
		if (setup_redirects() < 0) exit(125);
		execvp(exec_argv[0], exec_argv);
		int e = errno;
		printf("Couldn't execute '%s' inside the vm: %s\n", exec_argv[0], strerror(e));
		exit(e == ENOENT ? 127 : 126);
	}
	int status = 0;
	for (pid_t w; (w = waitpid(-1, &status, 0)) != child;) /* other children: not ours to report */
		if (w < 0 && errno != EINTR) break;
	if (WIFEXITED(status)) set_exit_code(WEXITSTATUS(status));
	else if (WIFSIGNALED(status)) set_exit_code(WTERMSIG(status) + 128);
	sync();
	reboot(RB_AUTOBOOT);
	return 0;
}
