package preflight

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

const (
	kvmGetAPIVersion = 0xAE00 // _IO(KVMIO, 0x00)
	kvmCreateVM      = 0xAE01 // _IO(KVMIO, 0x01)
	kvmAPIVersion    = 12
)

// KVMDevice is the device the KVM check opens; tests point it elsewhere.
var KVMDevice = "/dev/kvm"

// pvmModule exists when the host's KVM is PVM (kvm_pvm): nested
// virtualisation that boots only guest kernels built for PVM.
var pvmModule = "/sys/module/kvm_pvm"

// KVM checks that /dev/kvm opens read-write, speaks API version 12 and
// creates a VM. It also says when KVM is PVM-based, which stock libkrun
// guests do not boot on.
func KVM() Result {
	r := Result{Name: "kvm"}
	fd, err := unix.Open(KVMDevice, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		r.Status = Fail
		switch {
		case errors.Is(err, unix.ENOENT):
			r.Detail = fmt.Sprintf("%s does not exist", KVMDevice)
			r.Fix = "enable virtualisation in the firmware and load kvm_intel or kvm_amd (modprobe kvm_intel); on a cloud VM, pick an instance type with nested virtualisation"
		case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
			r.Detail = fmt.Sprintf("%s: %v", KVMDevice, err)
			r.Fix = "run the shim as root, or give its user read-write access to /dev/kvm (group kvm)"
		default:
			r.Detail = fmt.Sprintf("open %s: %v", KVMDevice, err)
			r.Fix = "check that /dev/kvm is the KVM character device (10:232)"
		}
		return r
	}
	defer unix.Close(fd)
	v, err := ioctl(fd, kvmGetAPIVersion)
	if err != nil || v != kvmAPIVersion {
		r.Status = Fail
		r.Detail = fmt.Sprintf("%s answers KVM_GET_API_VERSION with %d (%v), want %d", KVMDevice, v, err, kvmAPIVersion)
		r.Fix = "this is not a usable KVM device; check the host's kernel and modules"
		return r
	}
	vm, err := ioctl(fd, kvmCreateVM)
	if err != nil {
		r.Status = Fail
		r.Detail = fmt.Sprintf("KVM_CREATE_VM: %v", err)
		r.Fix = "KVM is present but refuses to create VMs: check dmesg, and that no other hypervisor holds VT-x/AMD-V"
		return r
	}
	unix.Close(int(vm))
	r.Status = Pass
	r.Detail = fmt.Sprintf("%s opens and creates VMs (API %d)", KVMDevice, v)
	if _, err := os.Stat(pvmModule); err == nil {
		r.Status = Warn
		r.Detail += "; but KVM here is PVM (kvm_pvm), which boots only guest kernels built for PVM: stock libkrun guests end in KVM_EXIT_INTERNAL_ERROR"
		r.Fix = "run boxlite on a host with hardware virtualisation (bare metal, or a VM with VT-x/AMD-V nesting)"
	}
	return r
}

func ioctl(fd int, req uintptr) (int, error) {
	v, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(v), nil
}
