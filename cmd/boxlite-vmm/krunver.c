/*
 * libkrun's version. libkrun has no function that returns it (no krun_*
 * version call in any release), so it is told from two things:
 *
 *  - the real file name: libkrun's make install installs libkrun.so.1.X.Y
 *    with libkrun.so.1 (the soname) and libkrun.so links to it, so the
 *    loaded object, links resolved, names the exact version when it was
 *    installed that way;
 *  - the exported symbols, which always give a floor (and a ceiling: the
 *    next release's first symbol is missing): see levels[].
 *
 * When both are known and agree, the version is the file name's. When they
 * disagree (a renamed or mislabelled file), the symbols are trusted and
 * only their range is known. When only the symbols are known, only their
 * range is.
 *
 * Why 1.18.1 is the minimum for the staged kernels:
 *  - libkrun before 1.17.0 dlopens libkrunfw.so.4: the staged libkrunfw.so.5
 *    is never loaded;
 *  - libkrun before 1.18.1 stalls guest-to-host vsock after about 256 KiB
 *    with kernels that carry Linux 6.12's "vsock/virtio: cap TX credit to
 *    local buffer size" (the net kernel, and libkrunfw 5.5, which dropped
 *    its reverts), and fails on vsock TX chains of more than two
 *    descriptors; both fixes are in 1.18.1 and 1.19.0, no 1.17.x has them.
 * 1.18.0 and 1.18.1 export the same symbols: a 1.18.x known only by its
 * symbols cannot be told apart, and is refused with what to do.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "krunver.h"

const struct krun_semver boxlite_krun_min = { 1, 18, 1 };

/* The first release that exports each symbol (libkrun's include/libkrun.h
 * and its extern "C" functions, by tag). Highest first. Symbols that only
 * some builds have (krun_add_net_tap: NET=1; krun_add_disk3: blk) are not
 * used. */
static const struct level {
	struct krun_semver v;
	const char *syms[5];
} levels[] = {
	{ { 1, 19, 0 }, { "krun_disable_implicit_init", "krun_get_default_init", "krun_fs_add_overlay_dir", "krun_fs_add_overlay_file", NULL } },
	{ { 1, 18, 0 }, { "krun_add_virtiofs3", NULL } },
	{ { 1, 17, 3 }, { "krun_has_feature", NULL } },
	{ { 1, 17, 0 }, { "krun_add_vsock", "krun_disable_implicit_vsock", NULL } },
	{ { 1, 16, 0 }, { "krun_get_max_vcpus", "krun_disable_implicit_console", NULL } },
	{ { 1, 10, 0 }, { "krun_add_vsock_port2", NULL } },
};
#define NLEVELS (sizeof levels / sizeof levels[0])

static int cmp(struct krun_semver a, struct krun_semver b)
{
	if (a.major != b.major) return a.major < b.major ? -1 : 1;
	if (a.minor != b.minor) return a.minor < b.minor ? -1 : 1;
	if (a.patch != b.patch) return a.patch < b.patch ? -1 : 1;
	return 0;
}

static void fmt(char *b, size_t n, struct krun_semver v) { snprintf(b, n, "%d.%d.%d", v.major, v.minor, v.patch); }

/* base is "libkrun[-variant].so.X.Y.Z" (libkrun-sev, -tdx, -efi ...). */
static int parse_name(const char *base, struct krun_semver *v)
{
	if (strncmp(base, "libkrun", 7) != 0) return 0;
	const char *p = base + 7;
	if (*p == '-') {
		p++;
		while (*p >= 'a' && *p <= 'z') p++;
	}
	int end = 0;
	if (sscanf(p, ".so.%d.%d.%d%n", &v->major, &v->minor, &v->patch, &end) != 3 || p[end] != 0) return 0;
	return v->major >= 0 && v->minor >= 0 && v->patch >= 0;
}

/* The range the symbols give, in words: "1.18.x", ">= 1.17.3, < 1.18.0",
 * ">= 1.19.0" or "< 1.10.0". */
static void range_words(char *b, size_t n, const struct boxlite_krunver *o)
{
	char lo[32], hi[32];
	fmt(lo, sizeof lo, o->floor);
	fmt(hi, sizeof hi, o->ceil);
	if (o->floor.major == 0) snprintf(b, n, "< %s", hi);
	else if (!o->ceil_known) snprintf(b, n, ">= %s", lo);
	else if (o->floor.patch == 0 && o->ceil.major == o->floor.major && o->ceil.minor == o->floor.minor + 1 && o->ceil.patch == 0)
		snprintf(b, n, "%d.%d.x", o->floor.major, o->floor.minor);
	else snprintf(b, n, ">= %s, < %s", lo, hi);
}

void boxlite_krunver_detect(void *h, struct boxlite_krunver *o)
{
	memset(o, 0, sizeof *o);
	struct link_map *lm = NULL;
	if (dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm && lm->l_name && *lm->l_name) {
		char real[PATH_MAX];
		snprintf(o->file, sizeof o->file, "%s", realpath(lm->l_name, real) ? real : lm->l_name);
	}
	const char *base = strrchr(o->file, '/');
	base = base ? base + 1 : o->file;
	o->file_known = parse_name(base, &o->file_ver);

	size_t i;
	for (i = 0; i < NLEVELS; i++) {
		int found = 0;
		for (int k = 0; levels[i].syms[k] && !found; k++) found = dlsym(h, levels[i].syms[k]) != NULL;
		if (found) break;
	}
	if (i < NLEVELS) o->floor = levels[i].v;
	if (i > 0) {
		o->ceil = levels[i - 1].v;
		o->ceil_known = 1;
	}
	char range[64], fv[32], minv[32];
	range_words(range, sizeof range, o);
	fmt(fv, sizeof fv, o->file_ver);
	fmt(minv, sizeof minv, boxlite_krun_min);
	o->agree = o->file_known && cmp(o->file_ver, o->floor) >= 0 && (!o->ceil_known || cmp(o->file_ver, o->ceil) < 0);
	o->exact = o->agree;
	if (o->exact) {
		snprintf(o->version, sizeof o->version, "%s", fv);
		snprintf(o->detection, sizeof o->detection, "file name %s; its symbols agree: %s", base, range);
	} else {
		snprintf(o->version, sizeof o->version, "%s", range);
		if (o->file_known)
			snprintf(o->detection, sizeof o->detection,
				 "file name %s says %s, but its symbols are those of %s: the symbols are trusted", base, fv, range);
		else
			snprintf(o->detection, sizeof o->detection, "symbols only: the file name %s carries no version",
				 *base ? base : "(unknown)");
	}

	/* Decide. */
	struct krun_semver known = o->exact ? o->file_ver : o->floor;
	if (cmp(known, boxlite_krun_min) >= 0) {
		o->supported = 1;
		return;
	}
	const struct krun_semver v117 = { 1, 17, 0 };
	int too_old = o->exact || (o->ceil_known && cmp(o->ceil, boxlite_krun_min) <= 0);
	int so4 = o->exact ? cmp(o->file_ver, v117) < 0 : (o->ceil_known && cmp(o->ceil, v117) <= 0);
	const char *why = so4
		? "libkrun before 1.17.0 loads libkrunfw.so.4, so the staged libkrunfw.so.5 would be ignored"
		: "libkrun before 1.18.1 stalls guest-to-host vsock after about 256 KiB with the Linux 6.12 vsock changes that both boxlite kernels carry, the net kernel and libkrunfw 5.5, and cannot take vsock TX chains of more than two descriptors";
	if (too_old)
		snprintf(o->problem, sizeof o->problem,
			 "libkrun %s (%s) is too old: needs >= %s for the staged kernel (%s); install libkrun %s or newer",
			 o->version, o->detection, minv, why, minv);
	else
		snprintf(o->problem, sizeof o->problem,
			 "libkrun %s (%s) cannot be told from 1.18.0, which is too old: needs >= %s for the staged kernel (%s); "
			 "1.18.0 and 1.18.1 export the same symbols, so install libkrun under its versioned file name "
			 "(libkrun.so.1.18.1, with libkrun.so.1 a link to it, as libkrun's make install does), or install libkrun 1.19 or newer",
			 o->version, o->detection, minv, why);
}
