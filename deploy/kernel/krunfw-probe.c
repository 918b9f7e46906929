/*
 * krunfw-probe: dlopen a libkrunfw-ABI library the way libkrun does and print
 * what it exports.
 *
 *   krunfw-probe LIB [DUMP]
 *
 * Prints version=, load_addr=, entry_addr=, size=, align= (the largest power
 * of two, up to 1 MiB, dividing the bundle's address) one per line; with DUMP
 * also writes the size bytes of the kernel bundle to that file.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef char *(*get_kernel_fn)(size_t *load_addr, size_t *entry_addr, size_t *size);
typedef int (*get_version_fn)(void);

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: %s LIB [DUMP]\n", argv[0]);
		return 2;
	}
	void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		fprintf(stderr, "dlopen: %s\n", dlerror());
		return 1;
	}
	get_kernel_fn get_kernel = (get_kernel_fn)dlsym(h, "krunfw_get_kernel");
	get_version_fn get_version = (get_version_fn)dlsym(h, "krunfw_get_version");
	if (!get_kernel || !get_version) {
		fprintf(stderr, "missing krunfw_get_kernel or krunfw_get_version\n");
		return 1;
	}
	size_t load = 0, entry = 0, size = 0;
	char *p = get_kernel(&load, &entry, &size);
	if (!p) {
		fprintf(stderr, "krunfw_get_kernel returned NULL\n");
		return 1;
	}
	uintptr_t a = (uintptr_t)p, align = 1;
	while (align < (1u << 20) && (a & (align << 1) - 1) == 0)
		align <<= 1;
	printf("version=%d\nload_addr=0x%zx\nentry_addr=0x%zx\nsize=%zu\nalign=%lu\n",
	       get_version(), load, entry, size, (unsigned long)align);
	if (argc == 3) {
		FILE *f = fopen(argv[2], "wb");
		if (!f || fwrite(p, 1, size, f) != size || fclose(f) != 0) {
			perror(argv[2]);
			return 1;
		}
	}
	return 0;
}
