package preflight

import (
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// KVM ioctls the vCPU probe uses (linux/kvm.h).
const (
	kvmGetVCPUMmapSize     = 0xAE04
	kvmCreateVCPU          = 0xAE41
	kvmSetUserMemoryRegion = 0x4020AE46
	kvmRun                 = 0xAE80
	kvmSetRegs             = 0x4090AE82
	kvmGetSregs            = 0x8138AE83
	kvmSetSregs            = 0x4138AE84

	kvmExitIO            = 2
	kvmExitHLT           = 5
	kvmExitShutdown      = 8
	kvmExitFailEntry     = 9
	kvmExitInternalError = 17
)

// probeCode runs in real mode at guest address 0x1000:
// mov al, 0x42; out 0x10, al; hlt.
var probeCode = []byte{0xb0, 0x42, 0xe6, 0x10, 0xf4}

var exitNames = map[uint32]string{
	kvmExitShutdown:      "KVM_EXIT_SHUTDOWN",
	kvmExitFailEntry:     "KVM_EXIT_FAIL_ENTRY",
	kvmExitInternalError: "KVM_EXIT_INTERNAL_ERROR",
}

// VCPU runs a five-byte real-mode guest on a real vCPU: it must write 0x42
// to an I/O port and halt. It shows that KVM runs guest code at all; it does
// not show that a Linux guest boots (PVM hosts pass it, yet stock libkrun
// kernels fail there): that is the boot probe's job, which needs libkrun.
func VCPU() Result {
	r := Result{Name: "vcpu"}
	err := runProbeGuest()
	if err != nil {
		r.Status = Fail
		r.Detail = "a minimal guest does not run on this host's KVM: " + err.Error()
		r.Fix = "guests cannot boot here; run boxlite on a host with hardware virtualisation (bare metal, or a VM with VT-x/AMD-V nesting)"
		if _, err := os.Stat(pvmModule); err == nil {
			r.Fix = "this host's KVM is PVM (kvm_pvm), which runs only PVM-enabled guest kernels; " + r.Fix
		}
		return r
	}
	r.Status = Pass
	r.Detail = "a minimal guest ran on a vCPU (port I/O, then HLT)"
	return r
}

func runProbeGuest() error {
	kvm, err := unix.Open(KVMDevice, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(kvm)
	vmfd, err := ioctl(kvm, kvmCreateVM)
	if err != nil {
		return fmt.Errorf("KVM_CREATE_VM: %w", err)
	}
	defer unix.Close(vmfd)

	const memSize = 0x10000
	mem, err := unix.Mmap(-1, 0, memSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		return err
	}
	defer unix.Munmap(mem)
	copy(mem[0x1000:], probeCode)
	region := make([]byte, 32)
	binary.LittleEndian.PutUint32(region[0:], 0)        // slot
	binary.LittleEndian.PutUint32(region[4:], 0)        // flags
	binary.LittleEndian.PutUint64(region[8:], 0)        // guest_phys_addr
	binary.LittleEndian.PutUint64(region[16:], memSize) // memory_size
	binary.LittleEndian.PutUint64(region[24:], uint64(uintptr(unsafe.Pointer(&mem[0]))))
	if err := ioctlPtr(vmfd, kvmSetUserMemoryRegion, region); err != nil {
		return fmt.Errorf("KVM_SET_USER_MEMORY_REGION: %w", err)
	}
	vcpu, err := ioctl(vmfd, kvmCreateVCPU)
	if err != nil {
		return fmt.Errorf("KVM_CREATE_VCPU: %w", err)
	}
	defer unix.Close(vcpu)
	runSize, err := ioctl(kvm, kvmGetVCPUMmapSize)
	if err != nil {
		return fmt.Errorf("KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	run, err := unix.Mmap(vcpu, 0, runSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return err
	}
	defer unix.Munmap(run)

	sregs := make([]byte, 312)
	if err := ioctlPtr(vcpu, kvmGetSregs, sregs); err != nil {
		return fmt.Errorf("KVM_GET_SREGS: %w", err)
	}
	// cs is the first kvm_segment: base (u64) then limit (u32), selector (u16).
	binary.LittleEndian.PutUint64(sregs[0:], 0)
	binary.LittleEndian.PutUint16(sregs[12:], 0)
	if err := ioctlPtr(vcpu, kvmSetSregs, sregs); err != nil {
		return fmt.Errorf("KVM_SET_SREGS: %w", err)
	}
	regs := make([]byte, 144)
	binary.LittleEndian.PutUint64(regs[16*8:], 0x1000) // rip
	binary.LittleEndian.PutUint64(regs[17*8:], 0x2)    // rflags
	if err := ioctlPtr(vcpu, kvmSetRegs, regs); err != nil {
		return fmt.Errorf("KVM_SET_REGS: %w", err)
	}

	sawIO := false
	for i := 0; i < 16; i++ {
		if _, err := ioctl(vcpu, kvmRun); err != nil {
			return fmt.Errorf("KVM_RUN: %w", err)
		}
		reason := binary.LittleEndian.Uint32(run[8:])
		switch reason {
		case kvmExitIO:
			// struct kvm_run.io: direction u8, size u8, port u16, count u32, data_offset u64.
			port := binary.LittleEndian.Uint16(run[34:])
			off := binary.LittleEndian.Uint64(run[40:])
			if port != 0x10 || off >= uint64(len(run)) || run[off] != 0x42 {
				return fmt.Errorf("guest wrote port %#x value %#x, want 0x10 0x42", port, run[off%uint64(len(run))])
			}
			sawIO = true
		case kvmExitHLT:
			if !sawIO {
				return fmt.Errorf("guest halted before writing to its I/O port")
			}
			return nil
		default:
			name := exitNames[reason]
			if name == "" {
				name = fmt.Sprintf("exit reason %d", reason)
			}
			return fmt.Errorf("vCPU stopped with %s", name)
		}
	}
	return fmt.Errorf("guest did not halt")
}

func ioctlPtr(fd int, req uintptr, buf []byte) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(&buf[0])))
	if errno != 0 {
		return errno
	}
	return nil
}
