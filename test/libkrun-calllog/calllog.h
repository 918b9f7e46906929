/*
 * The call log of the libkrun test libraries (test/libkrun-double and
 * test/libkrun-qemu): one JSON object per line for every libkrun call, with
 * its arguments and return value, in $KRUN_DOUBLE_LOG, else
 * ./krun-calls.jsonl (the VMM's cwd is the sandbox's state directory; the
 * file is opened at the first call, before the VMM confines itself, and
 * stays open). KRUN_DOUBLE_FAIL=name[,name...] makes the named calls fail
 * with -EINVAL (logged with "injected": true).
 *
 *	struct jl j; jl_begin(&j, "krun_set_root"); jl_str(&j, "root", root);
 *	return jl_done(&j, ret);
 *
 * Header only (static inline), for libraries built from one C file.
 */
#ifndef BOXLITE_LIBKRUN_CALLLOG_H
#define BOXLITE_LIBKRUN_CALLLOG_H

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline void *xrealloc(void *p, size_t n) { p = realloc(p, n ? n : 1); if (!p) abort(); return p; }
static inline char *xstrdup(const char *s) { return s ? strcpy(xrealloc(NULL, strlen(s) + 1), s) : NULL; }

/* A NULL-terminated copy of v (NULL: an empty vector). */
static inline char **strv_dup(const char *const *v)
{
	size_t n = 0;
	while (v && v[n]) n++;
	char **out = xrealloc(NULL, (n + 1) * sizeof(*out));
	for (size_t i = 0; i < n; i++) out[i] = xstrdup(v[i]);
	out[n] = NULL;
	return out;
}
static inline void strv_free(char **v) { for (size_t i = 0; v && v[i]; i++) free(v[i]); free(v); }

/* ---- one JSON line per call ---- */
struct jl { char *b; size_t n, cap; };
static int jl_logfd = -1;

static inline void jl_raw(struct jl *j, const char *s, size_t n)
{
	if (j->n + n + 1 > j->cap) { j->cap = (j->n + n + 1) * 2; j->b = xrealloc(j->b, j->cap); }
	memcpy(j->b + j->n, s, n);
	j->n += n;
	j->b[j->n] = 0;
}
static inline void jl_s(struct jl *j, const char *s) { jl_raw(j, s, strlen(s)); }
static inline void jl_qstr(struct jl *j, const char *s)
{
	if (!s) { jl_s(j, "null"); return; }
	jl_s(j, "\"");
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char e[8];
		if (*p == '"' || *p == '\\') { e[0] = '\\'; e[1] = (char)*p; jl_raw(j, e, 2); }
		else if (*p < 0x20) { snprintf(e, sizeof e, "\\u%04x", *p); jl_s(j, e); }
		else jl_raw(j, (const char *)p, 1);
	}
	jl_s(j, "\"");
}
static inline void jl_key(struct jl *j, const char *k) { jl_s(j, ","); jl_qstr(j, k); jl_s(j, ":"); }
static inline void jl_str(struct jl *j, const char *k, const char *v) { jl_key(j, k); jl_qstr(j, v); }
static inline void jl_int(struct jl *j, const char *k, long long v) { char b[32]; snprintf(b, sizeof b, "%lld", v); jl_key(j, k); jl_s(j, b); }
static inline void jl_uint(struct jl *j, const char *k, unsigned long long v) { char b[32]; snprintf(b, sizeof b, "%llu", v); jl_key(j, k); jl_s(j, b); }
static inline void jl_bool(struct jl *j, const char *k, bool v) { jl_key(j, k); jl_s(j, v ? "true" : "false"); }
static inline void jl_strv(struct jl *j, const char *k, const char *const *v)
{
	jl_key(j, k);
	if (!v) { jl_s(j, "null"); return; }
	jl_s(j, "[");
	for (size_t i = 0; v[i]; i++) { if (i) jl_s(j, ","); jl_qstr(j, v[i]); }
	jl_s(j, "]");
}
static inline void jl_begin(struct jl *j, const char *call) { j->b = NULL; j->n = j->cap = 0; jl_s(j, "{\"call\":"); jl_qstr(j, call); }
static inline void jl_write(struct jl *j)
{
	jl_s(j, "}\n");
	if (jl_logfd < 0) {
		const char *p = getenv("KRUN_DOUBLE_LOG");
		jl_logfd = open(p && *p ? p : "krun-calls.jsonl", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	}
	if (jl_logfd >= 0 && write(jl_logfd, j->b, j->n) != (ssize_t)j->n)
		fprintf(stderr, "libkrun call log: writing: %s\n", strerror(errno));
	free(j->b);
	j->b = NULL;
}
/* Adds "ret", writes the line, returns ret. */
static inline int32_t jl_done(struct jl *j, int32_t ret) { jl_int(j, "ret", ret); jl_write(j); return ret; }

/* 0, or -EINVAL (logged as injected) when KRUN_DOUBLE_FAIL names call. */
static inline int32_t inject(struct jl *j, const char *call)
{
	const char *f = getenv("KRUN_DOUBLE_FAIL");
	size_t n = strlen(call);
	for (const char *p = f; p && *p; p += strcspn(p, ","), p += (*p == ',')) {
		if (strncmp(p, call, n) == 0 && (p[n] == ',' || p[n] == 0)) { jl_bool(j, "injected", true); return -EINVAL; }
	}
	return 0;
}

#endif
