#!/usr/bin/env bash
# test/libkrun-qemu/build.sh OUTDIR — builds the emulated engine into OUTDIR:
#
#   libkrun.so.1         the library (soname libkrun.so.1)
#   bootstub             the boot stub QEMU starts (boot/)
#   init.krun            the guest's init, static (init/)
#   vhost-device-vsock   copied from the deps cache (make deps), if it is there
#
# The library finds the other three beside itself. CFLAGS adds compiler
# flags (the tests pass -Werror). Used by `make testbins` and the engine's
# tests (runtime/vmm/qemu_test.go).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${1:?usage: build.sh OUTDIR}
DEPS=${BOXLITE_DEPS:-/var/cache/boxlite-deps}
CC=${CC:-cc}
read -r -a EXTRA <<<"${CFLAGS:-}"
mkdir -p "$OUT"
"$CC" -O2 -Wall "${EXTRA[@]}" -shared -fPIC -Wl,-soname,libkrun.so.1 \
	-o "$OUT/libkrun.so.1" "$HERE/libkrun_qemu.c" -ldl -pthread
# The stub runs before the kernel: no libc, no SSE (CR4.OSFXSR is off), no
# red zone, linked at its physical address.
"$CC" -O2 -Wall "${EXTRA[@]}" -ffreestanding -fno-pic -fno-pie -fno-stack-protector -mno-red-zone \
	-mgeneral-regs-only -fno-asynchronous-unwind-tables -nostdlib -static \
	-Wl,--no-dynamic-linker -Wl,-no-pie -Wl,-T,"$HERE/boot/stub.ld" -Wl,--build-id=none \
	-Wl,--no-warn-rwx-segments -o "$OUT/bootstub" "$HERE/boot/entry.S" "$HERE/boot/stub.c"
"$CC" -O2 -Wall "${EXTRA[@]}" -static -o "$OUT/init.krun" "$HERE/init/init.c"
if [ -x "$DEPS/qemu-engine/vhost-device-vsock" ]; then
	cp -f "$DEPS/qemu-engine/vhost-device-vsock" "$OUT/vhost-device-vsock"
else
	echo "build.sh: $DEPS/qemu-engine/vhost-device-vsock is missing (make deps): the engine will look for vhost-device-vsock on PATH" >&2
fi
