/*
 * krundrive: drives a libkrun (the emulated engine, in qemu_test.go) through
 * calls boxlite-vmm does not make, without a jail:
 *
 *	krundrive LIBKRUN ROOT CONSOLE [PORT:PATH:LISTEN]... -- EXEC [ARG]...
 *
 * It runs krun_create_ctx, krun_set_vm_config(1, 256), krun_set_root,
 * krun_set_exec, krun_add_vsock_port2 for each port (LISTEN 0 or 1; a
 * failure is printed, not fatal), krun_set_console_output and
 * krun_start_enter, which ends the process with the guest's status.
 */
#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	if (argc < 6) { fprintf(stderr, "usage: krundrive LIBKRUN ROOT CONSOLE [PORT:PATH:LISTEN]... -- EXEC [ARG]...\n"); return 2; }
	void *h = dlopen(argv[1], RTLD_NOW);
	if (!h) { fprintf(stderr, "krundrive: %s\n", dlerror()); return 3; }
	int32_t (*create)(void) = (int32_t (*)(void))dlsym(h, "krun_create_ctx");
	int32_t (*vmcfg)(uint32_t, uint8_t, uint32_t) = (int32_t (*)(uint32_t, uint8_t, uint32_t))dlsym(h, "krun_set_vm_config");
	int32_t (*root)(uint32_t, const char *) = (int32_t (*)(uint32_t, const char *))dlsym(h, "krun_set_root");
	int32_t (*exec)(uint32_t, const char *, const char *const *, const char *const *) =
		(int32_t (*)(uint32_t, const char *, const char *const *, const char *const *))dlsym(h, "krun_set_exec");
	int32_t (*port)(uint32_t, uint32_t, const char *, bool) = (int32_t (*)(uint32_t, uint32_t, const char *, bool))dlsym(h, "krun_add_vsock_port2");
	int32_t (*console)(uint32_t, const char *) = (int32_t (*)(uint32_t, const char *))dlsym(h, "krun_set_console_output");
	int32_t (*start)(uint32_t) = (int32_t (*)(uint32_t))dlsym(h, "krun_start_enter");
	if (!create || !vmcfg || !root || !exec || !port || !console || !start) { fprintf(stderr, "krundrive: a function is missing\n"); return 3; }
	int32_t ctx = create();
	if (ctx < 0) { fprintf(stderr, "krundrive: krun_create_ctx: %d\n", ctx); return 5; }
	if (vmcfg((uint32_t)ctx, 1, 256) || root((uint32_t)ctx, argv[2]) || console((uint32_t)ctx, argv[3])) return 5;
	int i = 4;
	for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
		char *spec = strdup(argv[i]), *p = strchr(spec, ':'), *l = p ? strrchr(p + 1, ':') : NULL;
		if (!p || !l || l == p) { fprintf(stderr, "krundrive: bad port %s\n", argv[i]); return 2; }
		*p = *l = 0;
		int32_t r = port((uint32_t)ctx, (uint32_t)strtoul(spec, NULL, 10), p + 1, strcmp(l + 1, "1") == 0);
		printf("krun_add_vsock_port2 %s %d\n", argv[i], r);
		fflush(stdout);
	}
	if (i + 1 >= argc) return 2;
	static const char *const envp[] = { "PATH=/bin", NULL };
	if (exec((uint32_t)ctx, argv[i + 1], (const char *const *)argv + i + 2, envp)) return 5;
	int32_t r = start((uint32_t)ctx);
	fprintf(stderr, "krundrive: krun_start_enter: %d\n", r);
	return 5;
}
