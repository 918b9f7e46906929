/*
 * The boot stub's C half: the Linux "zero page" (struct boot_params) that
 * libkrun's configure_system (arch/x86_64/mod.rs) writes for the kernel,
 * built from what QEMU's firmware hands a PVH kernel (hvm_start_info: the
 * command line and the e820 memory map). Freestanding: no libc.
 *
 * Fields set, as libkrun sets them: setup_header.type_of_loader 0xff,
 * boot_flag 0xaa55, header "HdrS", cmd_line_ptr, cmdline_size,
 * kernel_alignment 16 MiB; e820_entries and e820_table. Two differences:
 * the e820 map is QEMU's (it also lists the firmware's reserved ranges,
 * where libkrun lists RAM only: [0, 0x9fc00) and [1 MiB, end)), and the
 * zero page and the command line live in the stub's memory, not at
 * libkrun's 0x7000 and 0x20000 (the kernel copies both first thing).
 */
#include <stddef.h>
#include <stdint.h>

#define HVM_START_MAGIC 0x336ec578
#define CMDLINE_MAX 0x10000 /* libkrun's CMDLINE_MAX_SIZE (x86_64) */
#define E820_MAX 128

struct hvm_start_info {
	uint32_t magic, version, flags, nr_modules;
	uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr;
	uint64_t memmap_paddr; /* version >= 1 */
	uint32_t memmap_entries, reserved;
};

struct hvm_memmap_entry {
	uint64_t addr, size;
	uint32_t type, reserved;
};

struct e820_entry {
	uint64_t addr, size;
	uint32_t type;
} __attribute__((packed));

_Static_assert(sizeof(struct e820_entry) == 20, "e820 entry");

static uint8_t zero_page[4096] __attribute__((aligned(4096)));
static char cmdline[CMDLINE_MAX];

void fault(void) __attribute__((noreturn));

static void put8(size_t off, uint8_t v) { zero_page[off] = v; }
static void put16(size_t off, uint16_t v) { for (int i = 0; i < 2; i++) zero_page[off + i] = (uint8_t)(v >> (8 * i)); }
static void put32(size_t off, uint32_t v) { for (int i = 0; i < 4; i++) zero_page[off + i] = (uint8_t)(v >> (8 * i)); }

/* Returns the zero page for the kernel's %rsi. */
void *stub_main(const struct hvm_start_info *si)
{
	if (si->magic != HVM_START_MAGIC || si->version < 1 || !si->memmap_paddr || !si->memmap_entries)
		fault();
	for (size_t i = 0; i < sizeof zero_page; i++) zero_page[i] = 0;

	/* The command line, copied (it may sit where the kernel clears its
	 * BSS before it reads it). */
	size_t n = 0;
	if (si->cmdline_paddr) {
		const char *src = (const char *)(uintptr_t)si->cmdline_paddr;
		while (n < CMDLINE_MAX - 1 && src[n]) { cmdline[n] = src[n]; n++; }
	}
	cmdline[n] = 0;

	put8(0x210, 0xff);         /* hdr.type_of_loader: "other" */
	put16(0x1fe, 0xaa55);      /* hdr.boot_flag */
	put32(0x202, 0x53726448);  /* hdr.header: "HdrS" */
	put32(0x228, (uint32_t)(uintptr_t)cmdline); /* hdr.cmd_line_ptr */
	put32(0x238, (uint32_t)n + 1);              /* hdr.cmdline_size */
	put32(0x230, 0x01000000);  /* hdr.kernel_alignment */

	const struct hvm_memmap_entry *mm = (const struct hvm_memmap_entry *)(uintptr_t)si->memmap_paddr;
	uint32_t count = si->memmap_entries < E820_MAX ? si->memmap_entries : E820_MAX;
	struct e820_entry *e820 = (struct e820_entry *)(zero_page + 0x2d0);
	for (uint32_t i = 0; i < count; i++) {
		e820[i].addr = mm[i].addr;
		e820[i].size = mm[i].size;
		e820[i].type = mm[i].type;
	}
	put8(0x1e8, (uint8_t)count); /* e820_entries */
	return zero_page;
}

/* What the compiler may call even in a freestanding build. */
void *memset(void *d, int c, size_t n)
{
	uint8_t *p = d;
	while (n--) *p++ = (uint8_t)c;
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	uint8_t *p = d;
	const uint8_t *q = s;
	while (n--) *p++ = *q++;
	return d;
}
