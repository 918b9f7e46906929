/* libkrun's version, as far as it can be told, and whether it can run the
 * staged kernels (krunver.c). One place for the VMM's start (jail.c, in C,
 * before the Go runtime) and for -probe (main.go, through cgo). */
#ifndef BOXLITE_VMM_KRUNVER_H
#define BOXLITE_VMM_KRUNVER_H

struct krun_semver {
	int major, minor, patch;
};

struct boxlite_krunver {
	/* The loaded object with links resolved ("" if unknown), and the
	 * version its name carries (file_known), as libkrun's make install
	 * names it: libkrun.so.1.18.1. */
	char file[4096];
	int file_known;
	struct krun_semver file_ver;
	/* From the exported symbols: at least floor (0.0.0: older than
	 * 1.10.0) and, when ceil_known, older than ceil. */
	struct krun_semver floor, ceil;
	int ceil_known;
	/* The file name's version lies in [floor, ceil). */
	int agree;
	/* version is exact (the file name's, confirmed by the symbols), or
	 * only the range the symbols give. */
	int exact;
	char version[64];
	/* How the version was told, in words. */
	char detection[512];
	/* Whether this libkrun runs the staged kernels; if not, why and what
	 * to do. */
	int supported;
	char problem[1024];
};

/* The oldest libkrun the staged kernels work with: 1.18.1. */
extern const struct krun_semver boxlite_krun_min;

/* Fills *out for the libkrun loaded as handle (a dlopen handle). */
void boxlite_krunver_detect(void *handle, struct boxlite_krunver *out);

#endif
