/*
 * The boot stub's entry: what libkrun's vCPU setup does before the kernel
 * runs (arch/x86_64 regs.rs: setup_sregs, setup_page_tables, setup_regs),
 * done by code in the guest because QEMU starts an ELF -kernel in 32-bit
 * protected mode through its Xen PVH note, with %ebx = hvm_start_info.
 *
 *   1. identity page tables (2 MiB pages) for the first 4 GiB (libkrun maps
 *      1 GiB; QEMU's firmware may put the start info anywhere below 4 GiB);
 *   2. libkrun's flat GDT: null, 64-bit code (0x08), data (0x10), TSS (0x18;
 *      not loaded: the PVH entry leaves a valid 32-bit TR, and the kernel
 *      loads its own);
 *   3. CR4.PAE, CR3, EFER.LME, CR0.PG: long mode;
 *   4. stub_main (stub.c) builds the zero page from the start info;
 *   5. the kernel's 64-bit entry with %rsi = the zero page, as libkrun's
 *      setup_regs leaves it, and interrupts off.
 *
 * The entry address is the one krunfw_get_kernel returned: QEMU's loader
 * device writes it (8 bytes) at BOXLITE_ENTRY_HANDOFF before the CPU starts.
 */
#define BOXLITE_ENTRY_HANDOFF 0x140000

	.section .note.Xen, "a", @note
	.balign 4
	.long 4			/* namesz: "Xen\0" */
	.long 8			/* descsz */
	.long 18		/* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.balign 4
	.quad pvh_start32	/* QEMU reads it as a 64-bit value for an ELF64 */
	.balign 4

	.section .text32, "ax"
	.code32
	.globl pvh_start32
pvh_start32:
	cli
	cld
	movl %ebx, %esi			/* hvm_start_info, kept for stub_main */
	movl $stack_top, %esp

	/* PML4[0] -> PDPT; PDPT[0..3] -> PD 0..3; PD: 2048 entries of 2 MiB. */
	movl $pdpt, %eax
	orl $0x3, %eax
	movl %eax, pml4
	movl $0, pml4 + 4
	xorl %ecx, %ecx
1:	movl %ecx, %eax
	shll $12, %eax
	addl $pd, %eax
	orl $0x3, %eax
	movl %eax, pdpt(, %ecx, 8)
	movl $0, pdpt + 4(, %ecx, 8)
	incl %ecx
	cmpl $4, %ecx
	jb 1b
	xorl %ecx, %ecx
2:	movl %ecx, %eax
	shll $21, %eax
	orl $0x83, %eax			/* present, writable, 2 MiB page */
	movl %eax, pd(, %ecx, 8)
	movl %ecx, %eax
	shrl $11, %eax			/* bits 32.. of (ecx << 21) */
	movl %eax, pd + 4(, %ecx, 8)
	incl %ecx
	cmpl $2048, %ecx
	jb 2b

	lgdt gdt_desc
	movl %cr4, %eax
	orl $0x20, %eax			/* PAE */
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $0xc0000080, %ecx		/* EFER */
	rdmsr
	orl $0x100, %eax		/* LME */
	wrmsr
	movl %cr0, %eax
	orl $0x80000001, %eax		/* PG | PE */
	movl %eax, %cr0
	ljmp $0x08, $long_mode

	.code64
long_mode:
	movl $0x10, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl %eax, %fs
	movl %eax, %gs
	movl %esi, %edi			/* stub_main(hvm_start_info) */
	movabsq $stack_top, %rsp
	call stub_main			/* returns the zero page */
	movq %rax, %rsi
	movq BOXLITE_ENTRY_HANDOFF, %rax
	testq %rax, %rax
	jz fault
	movq %rsp, %rbp
	xorl %ebx, %ebx
	xorl %edi, %edi
	jmp *%rax

	/* No entry address or no usable start info: a triple fault resets the
	 * machine, which ends QEMU (-no-reboot) as a guest reset. */
	.globl fault
fault:
	lidt null_idt
	int3
	hlt
	jmp fault

	.section .data
	.balign 16
gdt:
	.quad 0				/* null */
	.quad 0x00af9b000000ffff	/* 0x08: code, 64-bit (libkrun's gdt_entry(0xa09b, 0, 0xfffff)) */
	.quad 0x00cf93000000ffff	/* 0x10: data (gdt_entry(0xc093, 0, 0xfffff)) */
	.quad 0x008f8b000000ffff	/* 0x18: TSS (gdt_entry(0x808b, 0, 0xfffff)) */
gdt_end:
	.balign 8
	.word 0
gdt_desc:
	.word gdt_end - gdt - 1
	.quad gdt
null_idt:
	.word 0
	.quad 0

	.section .bss
	.balign 4096
pml4:	.skip 4096
pdpt:	.skip 4096
pd:	.skip 4 * 4096
	.skip 16384
stack_top:

	.section .note.GNU-stack, "", @progbits
