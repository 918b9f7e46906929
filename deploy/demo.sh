#!/usr/bin/env bash
# The demo (`make demo`): starts a private containerd 2.4 with its own root,
# state and socket, imports a locally built busybox image, and runs one
# container with the lean kernel and one with the net kernel through the shim;
# then stops everything it started.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
deps=${BOXLITE_DEPS:-/var/cache/boxlite-deps}
bin=$repo/bin
for f in "$deps/bin/containerd" "$deps/bin/ctr" "$deps/busybox/busybox" "$bin/containerd-shim-boxlite-v2"; do
  [ -x "$f" ] || { echo "demo: $f is missing: run 'make deps' and 'make'" >&2; exit 1; }
done

dir=$(mktemp -d /tmp/boxlite-demo.XXXXXX)
export PATH="$bin:$deps/bin:$PATH"
ctr() { "$deps/bin/ctr" --address "$dir/c.sock" --namespace boxlite-demo "$@"; }
cleanup() {
  [ -n "${cpid:-}" ] && kill "$cpid" 2>/dev/null && wait "$cpid" 2>/dev/null || true
  grep -o " $dir[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

cat > "$dir/config.toml" <<CFG
version = 3
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.podsandbox.controller.v1.podsandbox", "io.containerd.sandbox.controller.v1.shim", "io.containerd.nri.v1.nri"]
[grpc]
  address = "$dir/c.sock"
[ttrpc]
  address = "$dir/c.sock.ttrpc"
CFG
echo "== starting a private containerd ($("$deps/bin/containerd" --version | awk '{print $3}')) in $dir"
"$deps/bin/containerd" --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 &
cpid=$!
for _ in $(seq 100); do [ -S "$dir/c.sock" ] && break; sleep 0.1; done

echo "== building and importing the busybox image (no registry needed)"
(cd "$repo" && go run ./test/mkimage -busybox "$deps/busybox/busybox" -o "$dir/busybox.tar")
ctr image import "$dir/busybox.tar" 2>/dev/null

echo "== the shim: $(containerd-shim-boxlite-v2 -v | sed -n 2p | xargs)"
containerd-shim-boxlite-v2 -v | tail -n 1
# Can this host boot guests? `check` runs the same VMM path with a real libkrun.
cat > "$dir/shim.toml" <<CFG
state_dir = "$dir/boxlite"
cache_dir = "$dir/cache"
CFG
echo "== kernel variants this build can boot"
containerd-shim-boxlite-v2 kernels -config "$dir/shim.toml" || true
echo "== containerd-shim-boxlite-v2 check (node preflight)"
if containerd-shim-boxlite-v2 check -config "$dir/shim.toml"; then
  mode=vm
  echo "== guests boot here: containers run in libkrun micro-VMs"
elif engine=$bin/test/libkrun-qemu/libkrun.so.1 && [ -e "$engine" ] && command -v qemu-system-x86_64 >/dev/null && [ -x /usr/lib/qemu/virtiofsd ]; then
  mode=engine
  cat <<'MSG'
== NOTE: this host cannot boot guests under KVM (see the check above: real
==       libkrun and/or hardware KVM are missing). The demo goes on with QEMU
==       software emulation standing in for libkrun + KVM (test/libkrun-qemu,
==       tests only, never for pods): the same shim, VMM process and guest
==       agent, and each container runs in a real guest kernel (the variant the
==       shim staged), emulated, so each boot takes seconds, not KVM's times.
MSG
  echo "libkrun_path = \"$engine\"" >> "$dir/shim.toml"
else
  mode=double
  cat <<'MSG'
== NOTE: this host cannot boot guests (see the check above: real libkrun and/or
==       hardware KVM are missing), and the emulated engine is not built or QEMU
==       is missing (make testbins; make deps). The demo goes on through the
==       libkrun TEST DOUBLE (test/libkrun-double): the same shim, VMM process
==       and guest agent, but the agent runs as a HOST process, NOT in a VM.
==       `uname -r` below is then the host's kernel; what shows the variant is
==       the kernel blob each VMM process loaded (its /proc/PID/maps).
MSG
  echo "libkrun_path = \"$bin/test/libkrun.so.1\"" >> "$dir/shim.toml"
  [ -e "$bin/test/libkrun.so.1" ] || { echo "demo: $bin/test/libkrun.so.1 is missing: run 'make testbins'" >&2; exit 1; }
fi
run() { ctr run --runtime io.boxlite.v2 --runtime-config-path "$dir/shim.toml" "$@"; }
img=docker.io/boxlite/busybox:test

echo "== ctr run --rm --runtime io.boxlite.v2 $img hello sh -c 'echo hi from \$(hostname); exit 3'"
set +e
run --rm "$img" hello sh -c 'echo hi from $(hostname); exit 3' 2>/dev/null
echo "   exit status: $? (the container's)"
set -e

for k in lean net; do
  id=demo-$k
  echo "== ctr run -d --runtime io.boxlite.v2 --annotation io.boxlite.kernel=$k $img $id sleep 60"
  if ! out=$(run -d --annotation io.boxlite.kernel=$k "$img" $id sleep 60 2>&1); then
    echo "   failed: $(grep -v DEPRECATION <<<"$out")"
    continue
  fi
  rec="$dir/state/io.containerd.runtime.v2.task/boxlite-demo/$id/boxlite-sandbox.json"
  vmm=$(sed -n 's/.*"vmm_pid":\([0-9]*\).*/\1/p' "$rec")
  release=$(ctr task exec --exec-id uname $id uname -r 2>"$dir/exec.err") || release="(exec failed: $(grep -v DEPRECATION "$dir/exec.err"))"
  ipt=$(ctr task exec --exec-id ipt $id sh -c 'if [ -e /proc/net/ip_tables_names ]; then echo "exists (legacy iptables)"; else echo "absent (no legacy iptables)"; fi' 2>/dev/null) || ipt="(exec failed)"
  if [ "$mode" = vm ]; then
    echo "   uname -r in the guest: $release"
    echo "   /proc/net/ip_tables_names in the guest: $ipt"
  elif [ "$mode" = engine ]; then
    echo "   uname -r in the guest: $release  (the $k kernel, under QEMU emulation)"
    echo "   /proc/net/ip_tables_names in the guest: $ipt"
  else
    echo "   uname -r: $release  (the HOST's kernel: test double, no VM)"
  fi
  blob=$(awk '$6 ~ /libkrunfw/ {print $6}' "/proc/$vmm/maps" | sort -u | head -n1)
  if [ -n "$blob" ]; then
    real=$(readlink -f "$blob")
    echo "   VMM process $vmm loaded $real"
    echo "   sha256 $(sha256sum "$real" | cut -c1-16), $(containerd-shim-boxlite-v2 kernels -config "$dir/shim.toml" 2>/dev/null | awk -v k=$k 'NF==0 {exit} $1==k {print "the " k " variant: Linux " $5 ", iptables=" $6}')"
  else
    echo "   VMM process $vmm maps no libkrunfw (it may have exited)"
  fi
  ctr task kill -s SIGKILL $id >/dev/null 2>&1 || true
  for _ in $(seq 50); do ctr task ls 2>/dev/null | grep -q "^$id .*RUNNING" || break; sleep 0.1; done
  ctr task rm $id >/dev/null 2>&1 || true
  ctr container rm $id >/dev/null 2>&1 || true
done
left=$(pgrep -fc 'containerd-shim-boxlite-v2|boxlite-vmm|boxlite-agent' || true)
echo "== stopping containerd; processes of ours left behind: $left"
