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
if containerd-shim-boxlite-v2 kernels >/dev/null 2>&1; then
  echo "== kernel variants this build can boot"
  containerd-shim-boxlite-v2 kernels
fi

for k in lean net; do
  echo "== ctr run --runtime io.boxlite.v2 --annotation io.boxlite.kernel=$k ... uname -r"
  if out=$(ctr run --rm --runtime io.boxlite.v2 --annotation io.boxlite.kernel=$k \
      docker.io/boxlite/busybox:test demo-$k uname -r 2>&1); then
    echo "$out"
  else
    echo "   result: $(grep -v DEPRECATION <<<"$out")"
  fi
done
echo "== stopping containerd; left behind by the shim: $(pgrep -fc 'containerd-shim-boxlite-v2|boxlite-vmm' || true) processes"
