#!/usr/bin/env bash
# The docker-in-docker demo (`make demo-dind`): runs test/dind's suite
# verbosely and prints its transcript. A private containerd 2.4 with CRI and
# the boxlite drop-in, the dind test image (`make deps`, step dind-image:
# Debian 12's dockerd) imported; the pod of test/dind/testdata (README,
# "Docker-in-docker") on RuntimeClass boxlite-net: dockerd becomes ready in
# the net kernel, loads busybox from a `docker save` archive, runs a
# container, publishes a port through its NAT; the same pod on boxlite
# (lean): dockerd's iptables error, and the shim's hint. Guests boot on
# libkrun where `containerd-shim-boxlite-v2 check` finds it able to, else on
# the emulated engine (QEMU software emulation beneath libkrun's API). The
# suite removes everything it made and fails if anything of ours is left.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
deps=${BOXLITE_DEPS:-/var/cache/boxlite-deps}
bin=$repo/bin
for f in "$deps/dind/rootfs.tar" "$deps/bin/containerd" "$deps/bin/crictl" "$bin/containerd-shim-boxlite-v2" \
  "$bin/boxlite-vmm" "$bin/test/libkrun-qemu/libkrun.so.1"; do
  [ -e "$f" ] || { echo "demo-dind: $f is missing: run 'make deps' and 'make KERNELS=\"lean net\" build testbins'" >&2; exit 1; }
done
log=$(mktemp /tmp/boxlite-demo-dind.XXXXXX.log)
echo "== docker-in-docker through the shim: test/dind, verbose (full log: $log)"
echo "== it waits for the host's end-to-end suites' lock if another suite runs"
start=$SECONDS
set +e
(cd "$repo" && go test -count=1 -v -timeout 15m -run '^TestDockerInDocker$' ./test/dind) >"$log" 2>&1 &
gopid=$!
# The transcript: each logged step (the file:line prefix dropped) and its
# output; the results.
tail -n +1 -f --pid "$gopid" "$log" | awk '
  /^ *[a-z_]+\.go:[0-9]+: / { sub(/^ *[a-z_]+\.go:[0-9]+: /, ""); print "   " $0; cont = 1; fflush(); next }
  /^        / && cont { sub(/^        /, ""); print "     " $0; fflush(); next }
  { cont = 0 }
  /^(=== RUN|--- |ok |FAIL|PASS|dind:)/ || /the suite left/ { print; fflush() }'
wait "$gopid"
rc=$?
set -e
if [ "$rc" -ne 0 ]; then
  echo "== demo-dind FAILED (go test exit $rc) after $((SECONDS - start)) s; full log: $log" >&2
  exit "$rc"
fi
echo "== demo-dind done in $((SECONDS - start)) s; everything it started is gone (checked by the suite)"
rm -f "$log"
