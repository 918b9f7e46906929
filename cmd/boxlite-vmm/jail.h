/* The VMM's jail, set up by a constructor before the Go runtime starts (see
 * jail.c); main.go reads what it left. */
#ifndef BOXLITE_VMM_JAIL_H
#define BOXLITE_VMM_JAIL_H

#include <stdint.h>

struct boxlite_jail {
	int active;     /* 1: the process is jailed, and the fields below are set */
	void *libkrun;  /* dlopen handle of libkrun */
	int32_t ctx;    /* the libkrun context, made before the pivot */
	int test_double; /* libkrun is the test double (allowed by -allow-test-double) */
	const char *libkrun_path; /* the file the loader opened */
};

extern struct boxlite_jail boxlite_jail;

/* The capabilities the jailed VMM keeps (a bit mask of CAP_* numbers). */
extern const uint64_t boxlite_jail_caps;

#endif
