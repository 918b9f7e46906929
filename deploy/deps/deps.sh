#!/usr/bin/env bash
# deploy/deps/deps.sh — provision BoxLite's build/test dependencies into a cache.
#
#   deploy/deps/deps.sh [all|tools|critest|busybox|runc|lean|net|qemu-proof|qemu-engine|vulndb|dind-image ...]
#
# Cache: ${BOXLITE_DEPS:-/var/cache/boxlite-deps}
#   bin/{containerd,ctr,containerd-shim-runc-v2,crictl,runc,krunfw-probe}
#   bin/{critest,registry}                CRI validation suite, local OCI registry (make critest)
#   cni/bin/{bridge,host-local,loopback,portmap}
#   busybox/busybox                       static busybox (test images, QEMU initramfs)
#   kernels/{lean,net}/libkrunfw.so.5     kernel variants in the libkrunfw ABI
#   kernels/net/{vmlinux,config,qemu-proof.log}
#   qemu-engine/vhost-device-vsock        sid's vhost-user vsock backend, for the
#                                         emulated engine test/libkrun-qemu (with
#                                         bookworm's QEMU and its virtiofsd)
#   dind/rootfs.tar                       the docker-in-docker test image's root
#                                         filesystem (bookworm's docker.io, containerd,
#                                         runc, tini, iptables, ca-certificates;
#                                         mmdebstrap), dind/packages.tsv its versions
#   kernels/manifest.tsv                  variant  sha256  source  version
#   vulndb/osv/GO-*.json                  Go vulnerability database (govulncheck -db)
#   manifest.tsv                          name  version  sha256  path
#
# Every step checks its outputs against the recorded SHA-256 first and is
# skipped when they verify, so a warm run takes seconds. Outputs are written
# under temporary names and renamed into place, so an interrupted run leaves
# nothing half-written behind; just run it again.
#
# Debian packages that are not part of this system's release (sid's libkrunfw5
# and vhost-device-vsock, trixie's linux source) are only downloaded (apt-get download / apt-get
# source --download-only) through a private apt configuration under
# $DEPS/apt and unpacked with dpkg -x; they are never installed. Build tools
# from the system's own release are installed with apt-get when missing.
#
# Environment:
#   BOXLITE_DEPS            cache directory (default /var/cache/boxlite-deps)
#   BOXLITE_JOBS            make -j for the kernel build (default 2)
#   BOXLITE_NICE            nice level for the kernel build (default 10)
#   BOXLITE_DEBIAN_MIRROR   Debian archive URI (default: taken from the apt sources)
#   BOXLITE_LINUX_VERSION   Debian version of trixie's linux source (default: the one
#                           already fetched, else the newest listed that is served)
#
# The kernel source tree and build directory stay under $DEPS/build (~2 GB)
# so that a change to deploy/kernel/*.config rebuilds incrementally.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
KCONF_DIR=$ROOT/deploy/kernel

DEPS=${BOXLITE_DEPS:-/var/cache/boxlite-deps}
# The Go the project builds with (go.mod needs 1.27); the tools take it too.
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}
JOBS=${BOXLITE_JOBS:-2}
NICE=${BOXLITE_NICE:-10}

CONTAINERD_MODULE=github.com/containerd/containerd/v2
CONTAINERD_VERSION=v2.4.2
CRICTL_MODULE=sigs.k8s.io/cri-tools
CRICTL_VERSION=v1.37.0
CRITEST_PACKAGE=$CRICTL_MODULE/cmd/critest # a test binary: go test -c of the module's package
REGISTRY_MODULE=github.com/distribution/distribution/v3
REGISTRY_VERSION=v3.1.2
CNI_MODULE=github.com/containernetworking/plugins
CNI_VERSION=v1.10.0
VULN_MODULE=golang.org/x/vuln
VULN_VERSION=v1.9.0
# The Go vulnerability database, as the module proxy serves it: the public
# database service cannot be reached from here, so govulncheck reads a copy.
VULNDB_MODULE=golang.org/x/vulndb
VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018
LEAN_PACKAGE=libkrunfw5
LEAN_SUITE=sid
VSOCK_PACKAGE=vhost-device-vsock # sid, like libkrunfw5 (one private apt configuration)
VIRTIOFSD=/usr/lib/qemu/virtiofsd # bookworm's qemu-system-common
LINUX_SUITE=trixie
BOOKWORM_PACKAGES_SUITE=bookworm # busybox-static, runc

STEPS_ALL=(tools critest busybox runc lean net qemu-proof qemu-engine vulndb dind-image)

# --- output helpers -----------------------------------------------------------

log() { printf '[deps %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	printf '[deps %s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2
	exit 1
}
sha() { sha256sum "$1" | cut -d' ' -f1; }

# tsv_get FILE KEY: the line whose first column is KEY (empty if none).
tsv_get() { [ -f "$1" ] && awk -F'\t' -v k="$2" '$1 == k' "$1" || true; }

# tsv_set FILE KEY COLUMNS...: replace (or add) the line for KEY, atomically
# and under a lock, keeping the other lines in order.
tsv_set() {
	local file=$1 key=$2
	shift 2
	local line
	line=$(printf '%s\t' "$key" "$@")
	line=${line%$'\t'}
	(
		flock 9
		local tmp
		tmp=$(mktemp "$file.XXXXXX")
		if [ -f "$file" ]; then
			awk -F'\t' -v k="$key" '$1 != k' "$file" >"$tmp"
		fi
		printf '%s\n' "$line" >>"$tmp"
		chmod 0644 "$tmp"
		mv -f "$tmp" "$file"
	) 9>"$file.lock"
}

# install_atomic SRC DST [MODE]: copy SRC to DST through a temporary name.
install_atomic() {
	local src=$1 dst=$2 mode=${3:-0755} tmp
	mkdir -p "$(dirname "$dst")"
	tmp=$(mktemp "$dst.tmp.XXXXXX")
	cp -L "$src" "$tmp"
	chmod "$mode" "$tmp"
	mv -f "$tmp" "$dst"
}

# manifest_ok NAME VERSION PATH: PATH exists, the manifest records NAME at
# VERSION for PATH, and PATH's SHA-256 matches the record.
manifest_ok() {
	local name=$1 version=$2 path=$3 line
	[ -f "$path" ] || return 1
	line=$(tsv_get "$DEPS/manifest.tsv" "$name")
	[ -n "$line" ] || return 1
	local _n v s p
	IFS=$'\t' read -r _n v s p <<<"$line"
	[ "$v" = "$version" ] && [ "$p" = "$path" ] || return 1
	if [ "$(sha "$path")" != "$s" ]; then
		log "$name: $path does not match its recorded SHA-256; rebuilding"
		return 1
	fi
}

manifest_record() { # NAME VERSION PATH
	tsv_set "$DEPS/manifest.tsv" "$1" "$2" "$(sha "$3")" "$3"
}

# kernel_ok VARIANT [SOURCE VERSION]: kernels/VARIANT/libkrunfw.so.5 matches
# its line in kernels/manifest.tsv.
kernel_ok() {
	local variant=$1 f=$DEPS/kernels/$1/libkrunfw.so.5 line
	[ -f "$f" ] && [ ! -L "$f" ] || return 1
	line=$(tsv_get "$DEPS/kernels/manifest.tsv" "$variant")
	[ -n "$line" ] || return 1
	local _v s
	IFS=$'\t' read -r _v s _ <<<"$line"
	if [ "$(sha "$f")" != "$s" ]; then
		log "$variant kernel: $f does not match its recorded SHA-256; rebuilding"
		return 1
	fi
}

# with_progress LABEL LOGFILE CMD...: run CMD with its output in LOGFILE,
# printing a line every 30 s (or $PROGRESS_CMD's output, when set).
with_progress() {
	local label=$1 logf=$2 start=$SECONDS pid rc
	shift 2
	"$@" >"$logf" 2>&1 &
	pid=$!
	# shellcheck disable=SC2064
	trap "kill $pid 2>/dev/null || true" INT TERM
	while kill -0 "$pid" 2>/dev/null; do
		local _i
		for _i in $(seq 1 30); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 1
		done
		kill -0 "$pid" 2>/dev/null || break
		local extra=""
		if [ -n "${PROGRESS_CMD:-}" ]; then extra=$(eval "$PROGRESS_CMD" 2>/dev/null || true); fi
		log "$label: still running after $((SECONDS - start))s${extra:+; $extra} (log: $logf)"
	done
	rc=0
	wait "$pid" || rc=$?
	trap - INT TERM
	if [ "$rc" -ne 0 ]; then
		tail -n 40 "$logf" >&2 || true
		die "$label failed (exit $rc); full log: $logf"
	fi
}

# --- system packages (this system's own release only) ---------------------------

SYSTEM_APT_UPDATED=0
# ensure_pkgs PKG...: apt-get install those of PKG that dpkg does not know as installed.
ensure_pkgs() {
	local missing=() p
	for p in "$@"; do
		if ! dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed; then
			missing+=("$p")
		fi
	done
	[ "${#missing[@]}" -eq 0 ] && return 0
	[ "$(id -u)" -eq 0 ] || die "missing system packages: ${missing[*]} (run as root, or install them)"
	log "installing system packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if [ "$SYSTEM_APT_UPDATED" -eq 0 ]; then
		apt-get -q -o DPkg::Lock::Timeout=600 update >&2
		SYSTEM_APT_UPDATED=1
	fi
	apt-get -q -y -o DPkg::Lock::Timeout=600 install --no-install-recommends "${missing[@]}" >&2
}

# --- private apt configuration (download-only, never installs) ------------------

# debian_mirror: the Debian archive this system's apt uses for its own release,
# read from the apt sources (deb822 *.sources, then sources.list).
debian_mirror() {
	if [ -n "${BOXLITE_DEBIAN_MIRROR:-}" ]; then
		echo "$BOXLITE_DEBIAN_MIRROR"
		return
	fi
	local codename uri=""
	codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	[ -n "$codename" ] || die "cannot tell this system's Debian release; set BOXLITE_DEBIAN_MIRROR"
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		uri=$(awk -v cn="$codename" '
			function flush() {
				if (uris != "" && enabled != "no" && types ~ /(^| )deb( |$)/ && suites ~ ("(^| )" cn "( |$)") && uris !~ /security/) {
					split(uris, u, " "); print u[1]; found = 1; exit
				}
				uris = ""; suites = ""; types = ""; enabled = ""
			}
			/^[ \t]*#/ { next }
			/^[ \t]*$/ { flush(); next }
			{ key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ +/, ""); val = $0 }
			key == "uris" { uris = val } key == "suites" { suites = val }
			key == "types" { types = val } key == "enabled" { enabled = tolower(val) }
			END { if (!found) flush() }' "$f")
		[ -n "$uri" ] && break
	done
	if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
		uri=$(awk -v cn="$codename" '
			$1 == "deb" {
				i = 2
				if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
				if ($(i + 1) == cn && $i !~ /security/) { print $i; exit }
			}' /etc/apt/sources.list)
	fi
	[ -n "$uri" ] || die "no Debian archive for '$codename' found in the apt sources; set BOXLITE_DEBIAN_MIRROR"
	echo "${uri%/}"
}

APTDIR=$DEPS/apt
APT_OPTS=()
PRIVATE_APT_UPDATED=0

apt_private_setup() {
	[ "${#APT_OPTS[@]}" -gt 0 ] && return 0
	local mirror arch keyring=/usr/share/keyrings/debian-archive-keyring.gpg
	[ -f "$keyring" ] || ensure_pkgs debian-archive-keyring
	mirror=$(debian_mirror)
	arch=$(dpkg --print-architecture)
	mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$DEPS/downloads"
	local want
	want=$(printf '%s\n' \
		"deb [arch=$arch signed-by=$keyring] $mirror $LEAN_SUITE main" \
		"deb [arch=$arch signed-by=$keyring] $mirror $BOOKWORM_PACKAGES_SUITE main" \
		"deb-src [signed-by=$keyring] $mirror $LINUX_SUITE main")
	if [ ! -f "$APTDIR/sources.list" ] || [ "$(cat "$APTDIR/sources.list")" != "$want" ]; then
		printf '%s\n' "$want" >"$APTDIR/sources.list.tmp"
		mv -f "$APTDIR/sources.list.tmp" "$APTDIR/sources.list"
		rm -f "$APTDIR/updated"
	fi
	APT_OPTS=(
		-o "Dir::Etc::SourceList=$APTDIR/sources.list"
		-o "Dir::Etc::SourceParts=/dev/null"
		-o "Dir::Etc::Preferences=/dev/null"
		-o "Dir::Etc::PreferencesParts=/dev/null"
		-o "Dir::State::Lists=$APTDIR/lists"
		-o "Dir::Cache=$APTDIR/cache"
		-o "APT::Sandbox::User=root"
		-o "Acquire::Languages=none"
		-o "APT::Get::List-Cleanup=true"
		-o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
		-o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
		-o "Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled=false"
		-o "Acquire::IndexTargets::deb::CNF::DefaultEnabled=false"
	)
}

# apt_private_update [force]: refresh the private lists (once per run, and only
# when they are missing, older than a day, or forced).
apt_private_update() {
	apt_private_setup
	local force=${1:-}
	if [ -z "$force" ] && [ "$PRIVATE_APT_UPDATED" -eq 1 ]; then return 0; fi
	if [ -z "$force" ] && [ -f "$APTDIR/updated" ] && [ -z "$(find "$APTDIR/updated" -mmin +1440)" ]; then
		PRIVATE_APT_UPDATED=1
		return 0
	fi
	log "apt (private, download-only): updating package lists for $LEAN_SUITE, $BOOKWORM_PACKAGES_SUITE, $LINUX_SUITE sources"
	(
		flock 9
		apt-get -q "${APT_OPTS[@]}" update >&2
	) 9>"$APTDIR/lock"
	touch "$APTDIR/updated"
	PRIVATE_APT_UPDATED=1
}

# apt_download PKG[/SUITE]: download a .deb into $DEPS/downloads (unless a copy
# with the index's SHA-256 is there already) and print its path. apt verifies
# what it downloads against the signed Packages index; the check is repeated
# here for a copy that was already present.
apt_download() {
	local spec=$1 attempt uri_line=""
	apt_private_update
	for attempt in 1 2; do
		uri_line=$(apt-get -q "${APT_OPTS[@]}" download --print-uris "$spec" 2>/dev/null | grep "^'" | head -n1 || true)
		[ -n "$uri_line" ] && break
		[ "$attempt" -eq 1 ] || die "apt cannot find $spec in the private lists"
		apt_private_update force
	done
	local file want
	file=$(awk '{print $2}' <<<"$uri_line")
	want=$(awk '{print $4}' <<<"$uri_line")
	want=${want#SHA256:}
	local deb=$DEPS/downloads/$file
	if [ -f "$deb" ] && [ "$(sha "$deb")" = "$want" ]; then
		echo "$deb"
		return 0
	fi
	for attempt in 1 2; do
		if (cd "$DEPS/downloads" && flock "$APTDIR/lock" apt-get -q "${APT_OPTS[@]}" download "$spec" >&2); then
			break
		fi
		[ "$attempt" -eq 1 ] || die "apt-get download $spec failed"
		log "apt-get download $spec failed; refreshing the lists and retrying"
		apt_private_update force
	done
	[ -f "$deb" ] || die "apt-get download $spec did not produce $file"
	[ "${#want}" -ne 64 ] || [ "$(sha "$deb")" = "$want" ] || die "$deb does not match the SHA-256 in the Packages index"
	echo "$deb"
}

# --- step: tools (go install) ------------------------------------------------------

tool_list() { # name<TAB>package@version<TAB>gobin-subdir
	printf '%s\t%s\t%s\n' \
		containerd "$CONTAINERD_MODULE/cmd/containerd@$CONTAINERD_VERSION" bin \
		ctr "$CONTAINERD_MODULE/cmd/ctr@$CONTAINERD_VERSION" bin \
		containerd-shim-runc-v2 "$CONTAINERD_MODULE/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" bin \
		crictl "$CRICTL_MODULE/cmd/crictl@$CRICTL_VERSION" bin \
		bridge "$CNI_MODULE/plugins/main/bridge@$CNI_VERSION" cni/bin \
		host-local "$CNI_MODULE/plugins/ipam/host-local@$CNI_VERSION" cni/bin \
		loopback "$CNI_MODULE/plugins/main/loopback@$CNI_VERSION" cni/bin \
		portmap "$CNI_MODULE/plugins/meta/portmap@$CNI_VERSION" cni/bin \
		govulncheck "$VULN_MODULE/cmd/govulncheck@$VULN_VERSION" bin
}

# tool_version NAME PKG: the version recorded for a tool: the module's, and
# for govulncheck also the Go it is built with (it must be at least the Go of
# the code it reads).
tool_version() {
	case $1 in
	govulncheck) echo "${2#*@}+$(go env GOVERSION)" ;;
	*) echo "${2#*@}" ;;
	esac
}

verify_tools() {
	local name pkg dir
	while IFS=$'\t' read -r name pkg dir; do
		manifest_ok "$name" "$(tool_version "$name" "$pkg")" "$DEPS/$dir/$name" || return 1
	done < <(tool_list)
}

do_tools() {
	command -v go >/dev/null || die "go is not on PATH"
	# The pod-network tests drive namespaces and tc with the system's tools.
	command -v ip >/dev/null && command -v tc >/dev/null || ensure_pkgs iproute2
	command -v nsenter >/dev/null && command -v unshare >/dev/null || ensure_pkgs util-linux
	rm -rf "$DEPS"/bin/.stage.* "$DEPS"/cni/bin/.stage.* # left by an interrupted run
	local name pkg dir
	while IFS=$'\t' read -r name pkg dir; do
		if manifest_ok "$name" "$(tool_version "$name" "$pkg")" "$DEPS/$dir/$name"; then
			log "tools: $name ${pkg#*@} ok"
			continue
		fi
		local flags=()
		case $name in
		containerd | ctr)
			# Builds with or without it (checked); the btrfs snapshotter is
			# left out because nothing here runs on btrfs.
			flags=(-tags=no_btrfs) ;;
		crictl) flags=(-ldflags="-X $CRICTL_MODULE/pkg/version.Version=$CRICTL_VERSION") ;;
		bridge | host-local | loopback | portmap)
			flags=(-ldflags="-X $CNI_MODULE/pkg/utils/buildversion.BuildVersion=$CNI_VERSION") ;;
		esac
		local stage
		stage=$(mktemp -d "$DEPS/$dir/.stage.XXXXXX")
		log "tools: go install ${flags[*]} $pkg"
		PROGRESS_CMD="" with_progress "go install $name" "$DEPS/logs/tools-$name.log" \
			env GOBIN="$stage" GOFLAGS="${GOFLAGS:-} -buildvcs=false" go install -trimpath "${flags[@]}" "$pkg"
		[ -x "$stage/$name" ] || die "go install $pkg produced no $name"
		mv -f "$stage/$name" "$DEPS/$dir/$name"
		rmdir "$stage"
		manifest_record "$name" "$(tool_version "$name" "$pkg")" "$DEPS/$dir/$name"
		log "tools: $name ${pkg#*@} installed"
	done < <(tool_list)
}

# --- step: critest (cri-tools' CRI validation suite) and a local registry -------------

verify_critest() {
	command -v nft >/dev/null && manifest_ok critest "$CRICTL_VERSION" "$DEPS/bin/critest" &&
		manifest_ok registry "$REGISTRY_VERSION" "$DEPS/bin/registry"
}

do_critest() {
	command -v go >/dev/null || die "go is not on PATH"
	# critest's host-port spec: CNI's portmap plugin programs nftables with nft.
	command -v nft >/dev/null || ensure_pkgs nftables
	rm -rf "$DEPS"/bin/.stage.* # left by an interrupted run
	local stage
	if ! manifest_ok registry "$REGISTRY_VERSION" "$DEPS/bin/registry"; then
		stage=$(mktemp -d "$DEPS/bin/.stage.XXXXXX")
		log "critest: go install $REGISTRY_MODULE/cmd/registry@$REGISTRY_VERSION"
		PROGRESS_CMD="" with_progress "go install registry" "$DEPS/logs/critest-registry.log" \
			env GOBIN="$stage" GOFLAGS="${GOFLAGS:-} -buildvcs=false" go install -trimpath "$REGISTRY_MODULE/cmd/registry@$REGISTRY_VERSION"
		[ -x "$stage/registry" ] || die "go install $REGISTRY_MODULE/cmd/registry produced no registry"
		mv -f "$stage/registry" "$DEPS/bin/registry"
		rm -rf "$stage"
		manifest_record registry "$REGISTRY_VERSION" "$DEPS/bin/registry"
		log "critest: registry $REGISTRY_VERSION installed"
	fi
	if ! manifest_ok critest "$CRICTL_VERSION" "$DEPS/bin/critest"; then
		# critest is cmd/critest's test binary: build it in a writable copy of
		# the module (the module cache is read-only), with its own go.sum.
		local dir
		dir=$(cd / && go mod download -json "$CRICTL_MODULE@$CRICTL_VERSION" | awk -F'"' '$2 == "Dir" { print $4 }')
		[ -n "$dir" ] && [ -d "$dir" ] || die "go mod download $CRICTL_MODULE@$CRICTL_VERSION gave no module directory"
		stage=$(mktemp -d "$DEPS/bin/.stage.XXXXXX")
		cp -r "$dir" "$stage/src"
		chmod -R u+w "$stage/src"
		log "critest: go test -c $CRITEST_PACKAGE@$CRICTL_VERSION"
		PROGRESS_CMD="" with_progress "build critest" "$DEPS/logs/critest-build.log" \
			bash -c 'cd "$1/src" && GOFLAGS="-mod=readonly -buildvcs=false" go test -c -trimpath -ldflags "-X $2/pkg/version.Version=$3" -o "$1/critest" ./cmd/critest' _ "$stage" "$CRICTL_MODULE" "$CRICTL_VERSION"
		[ -x "$stage/critest" ] || die "go test -c $CRITEST_PACKAGE produced no binary"
		mv -f "$stage/critest" "$DEPS/bin/critest"
		rm -rf "$stage"
		manifest_record critest "$CRICTL_VERSION" "$DEPS/bin/critest"
		log "critest: critest $CRICTL_VERSION installed"
	fi
}

# --- step: busybox, runc (Debian binaries) -----------------------------------------

# deb_extract DEB FILE-IN-PACKAGE DST: dpkg -x DEB and install one file of it.
deb_extract() {
	local deb=$1 inpkg=$2 dst=$3 tmp
	tmp=$(mktemp -d "$DEPS/downloads/.x.XXXXXX")
	dpkg -x "$deb" "$tmp"
	[ -f "$tmp/$inpkg" ] || {
		rm -rf "$tmp"
		die "$deb has no $inpkg"
	}
	install_atomic "$tmp/$inpkg" "$dst"
	rm -rf "$tmp"
}

deb_version() { dpkg-deb -f "$1" Version; }
deb_source() { # source package name (Source may carry "(version)")
	local s
	s=$(dpkg-deb -f "$1" Source)
	s=${s%% *}
	[ -n "$s" ] || s=$(dpkg-deb -f "$1" Package)
	echo "$s"
}

verify_busybox() {
	local line
	line=$(tsv_get "$DEPS/manifest.tsv" busybox)
	[ -n "$line" ] || return 1
	manifest_ok busybox "$(cut -f2 <<<"$line")" "$DEPS/busybox/busybox"
}

do_busybox() {
	local deb
	deb=$(apt_download "busybox-static/$BOOKWORM_PACKAGES_SUITE")
	deb_extract "$deb" bin/busybox "$DEPS/busybox/busybox"
	if readelf -lW "$DEPS/busybox/busybox" | grep -q 'INTERP'; then
		die "$DEPS/busybox/busybox is not a static executable"
	fi
	"$DEPS/busybox/busybox" true || die "$DEPS/busybox/busybox does not run"
	manifest_record busybox "$(deb_version "$deb")" "$DEPS/busybox/busybox"
	log "busybox: $(deb_version "$deb") → $DEPS/busybox/busybox"
}

verify_runc() {
	local line
	line=$(tsv_get "$DEPS/manifest.tsv" runc)
	[ -n "$line" ] || return 1
	manifest_ok runc "$(cut -f2 <<<"$line")" "$DEPS/bin/runc"
}

do_runc() {
	local deb
	deb=$(apt_download "runc/$BOOKWORM_PACKAGES_SUITE")
	deb_extract "$deb" usr/sbin/runc "$DEPS/bin/runc"
	"$DEPS/bin/runc" --version >/dev/null 2>&1 || log "runc: warning: $DEPS/bin/runc --version failed (missing shared libraries?)"
	manifest_record runc "$(deb_version "$deb")" "$DEPS/bin/runc"
	log "runc: $(deb_version "$deb") → $DEPS/bin/runc"
}

# --- krunfw-probe: dlopen a libkrunfw.so.5 and print what it returns ---------------

PROBE=$DEPS/bin/krunfw-probe
ensure_probe() {
	local src=$KCONF_DIR/krunfw-probe.c want
	want=$(sha "$src")
	if [ -x "$PROBE" ] && [ "$(cat "$PROBE.src-sha256" 2>/dev/null)" = "$want" ]; then return 0; fi
	command -v cc >/dev/null || ensure_pkgs gcc libc6-dev
	local tmp
	tmp=$(mktemp "$PROBE.tmp.XXXXXX")
	cc -O2 -o "$tmp" "$src" -ldl
	chmod 0755 "$tmp"
	mv -f "$tmp" "$PROBE"
	echo "$want" >"$PROBE.src-sha256"
}

# krunfw_abi_version LIB: the number krunfw_get_version() returns.
krunfw_abi_version() {
	ensure_probe
	"$PROBE" "$1" | awk -F= '$1 == "version" { print $2 }'
}

# --- step: lean (stock libkrunfw from Debian sid) ------------------------------------

verify_lean() { kernel_ok lean; }

do_lean() {
	local deb tmp so
	deb=$(apt_download "$LEAN_PACKAGE/$LEAN_SUITE")
	tmp=$(mktemp -d "$DEPS/downloads/.x.XXXXXX")
	dpkg -x "$deb" "$tmp"
	so=$(find "$tmp" -name 'libkrunfw.so.5*' -type f | head -n1)
	[ -n "$so" ] || die "$deb holds no libkrunfw.so.5"
	install_atomic "$so" "$DEPS/kernels/lean/libkrunfw.so.5" 0644
	rm -rf "$tmp"
	ensure_probe
	"$PROBE" "$DEPS/kernels/lean/libkrunfw.so.5" >"$DEPS/kernels/lean/probe.txt" ||
		die "$DEPS/kernels/lean/libkrunfw.so.5 does not load"
	tsv_set "$DEPS/kernels/manifest.tsv" lean "$(sha "$DEPS/kernels/lean/libkrunfw.so.5")" \
		"$(deb_source "$deb")" "$(deb_version "$deb")"
	log "lean: $(deb_source "$deb") $(deb_version "$deb") → $DEPS/kernels/lean/libkrunfw.so.5"
}

# --- step: net (trixie linux source + our kconfig, bundled by our bundler) ------------

FRAGMENTS=("$KCONF_DIR/libkrun-guest.config" "$KCONF_DIR/lean-parity.config" "$KCONF_DIR/net-overlay.config")

# net_inputs_hash: what the net kernel is made from (kconfig, bundler, ABI version).
net_inputs_hash() {
	{
		cat "${FRAGMENTS[@]}"
		cat "$KCONF_DIR"/krunfw-probe.c "$KCONF_DIR"/bundle/main.go
		echo "abi=$1"
	} | sha256sum | cut -d' ' -f1
}

verify_net() {
	kernel_ok net || return 1
	if [ -n "${BOXLITE_LINUX_VERSION:-}" ] &&
		[ "$(tsv_get "$DEPS/kernels/manifest.tsv" net | cut -f4)" != "$BOXLITE_LINUX_VERSION-boxlite-net" ]; then
		return 1
	fi
	local d=$DEPS/kernels/net
	[ -f "$d/vmlinux" ] && [ -f "$d/config" ] && [ -f "$d/inputs.sha256" ] || return 1
	# Rebuild when the kconfig fragments or the bundler changed.
	verify_lean || return 1
	local abi
	abi=$(krunfw_abi_version "$DEPS/kernels/lean/libkrunfw.so.5")
	if [ "$(cat "$d/inputs.sha256")" != "$(net_inputs_hash "$abi")" ]; then
		log "net: the kconfig fragments or the bundler changed since the last build"
		return 1
	fi
	[ "$(sha "$d/vmlinux")" = "$(cat "$d/vmlinux.sha256" 2>/dev/null)" ] || return 1
}

# linux_versions: candidate Debian versions of the linux source, newest first.
# The archive lists some versions whose files it no longer serves, so the
# fetch tries them in turn.
linux_versions() {
	if [ -n "${BOXLITE_LINUX_VERSION:-}" ]; then
		echo "$BOXLITE_LINUX_VERSION"
		return
	fi
	apt-cache "${APT_OPTS[@]}" showsrc --only-source linux 2>/dev/null |
		awk '/^Package: /{p=$2} /^Version: /{ if (p == "linux") print $2 }' | sort -Vr | uniq
}

# fetch_linux: make sure a verified linux source is in $DEPS/src; print its version.
fetch_linux() {
	local src=$DEPS/src v
	mkdir -p "$src"
	# Already fetched and verified? (the requested version, else the newest)
	if [ -n "${BOXLITE_LINUX_VERSION:-}" ]; then
		if [ -f "$src/.fetched-$BOXLITE_LINUX_VERSION" ]; then
			echo "$BOXLITE_LINUX_VERSION"
			return 0
		fi
	else
		for v in $(find "$src" -maxdepth 1 -name '.fetched-*' -printf '%f\n' | sed 's/^\.fetched-//' | sort -Vr); do
			echo "$v"
			return 0
		done
	fi
	apt_private_update
	local candidates
	candidates=$(linux_versions)
	[ -n "$candidates" ] || die "no linux source package listed for $LINUX_SUITE"
	for v in $candidates; do
		local up=${v%-*}
		log "net: downloading Debian linux source $v ($LINUX_SUITE, ~150 MB)"
		if ! (cd "$src" && flock "$APTDIR/lock" apt-get -q "${APT_OPTS[@]}" source --download-only "linux=$v" >&2); then
			log "net: linux $v is listed but not served here; trying the next version"
			continue
		fi
		# apt-get checked every file against the signed Sources index; cross-check
		# the orig tarball against the .dsc's Checksums-Sha256 as well.
		local want orig=$src/linux_${up}.orig.tar.xz dsc=$src/linux_${v}.dsc
		want=$(awk -v f="linux_${up}.orig.tar.xz" '/^Checksums-Sha256:/{c=1; next} /^[^ ]/{c=0} c && $3 == f {print $1}' "$dsc")
		[ -n "$want" ] && [ "$(sha "$orig")" = "$want" ] || die "$orig does not match $dsc"
		touch "$src/.fetched-$v"
		echo "$v"
		return 0
	done
	die "none of the listed linux source versions could be downloaded: $candidates"
}

# check_fragments CONFIG FRAGMENT...: every option a fragment sets survived into CONFIG.
check_fragments() {
	local config=$1 bad=()
	shift
	local f line opt val
	for f in "$@"; do
		while IFS= read -r line; do
			if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
				opt=${BASH_REMATCH[1]} val=${BASH_REMATCH[2]}
				grep -qxF "$opt=$val" "$config" || bad+=("$opt=$val (have: $(grep -E "^(# )?${opt}[= ]" "$config" || echo 'absent'); from $(basename "$f"))")
			elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
				opt=${BASH_REMATCH[1]}
				if grep -qE "^$opt=" "$config"; then bad+=("$opt should be unset (have: $(grep -E "^$opt=" "$config"); from $(basename "$f"))"); fi
			fi
		done <"$f"
	done
	if [ "${#bad[@]}" -gt 0 ]; then
		printf '  dropped: %s\n' "${bad[@]}" >&2
		die "${#bad[@]} kconfig option(s) did not survive olddefconfig (missing dependency or unknown symbol); fix deploy/kernel/*.config"
	fi
}

do_net() {
	ensure_pkgs gcc make bc flex bison libelf-dev libssl-dev xz-utils perl
	command -v go >/dev/null || die "go is not on PATH (needed for the bundler)"
	local ver up src=$DEPS/src
	apt_private_setup
	ver=$(fetch_linux)
	up=${ver%-*}
	mkdir -p "$DEPS/build"

	# 1. fetched above; apt-get verified it against the signed Sources index.
	local orig=$src/linux_${up}.orig.tar.xz

	# 2. unpack the upstream (orig) tarball only; Debian's patches are not applied.
	local tree=$DEPS/build/linux-$up
	if [ ! -f "$tree/.unpacked" ]; then
		log "net: unpacking $(basename "$orig")"
		rm -rf "$tree" "$tree.tmp"
		mkdir -p "$tree.tmp"
		PROGRESS_CMD="echo \$(du -sm $tree.tmp | cut -f1) MiB" \
			with_progress "unpack linux" "$DEPS/logs/net-unpack.log" \
			tar -xJf "$orig" -C "$tree.tmp" --strip-components=1
		touch "$tree.tmp/.unpacked"
		mv "$tree.tmp" "$tree"
	fi

	# 3. configure: allnoconfig + our fragments, olddefconfig, verify.
	local obj=$DEPS/build/net-$ver
	local kmake=(make -C "$tree" O="$obj" ARCH=x86_64)
	mkdir -p "$obj"
	log "net: configuring (allnoconfig$(printf ' + %s' "${FRAGMENTS[@]##*/}"))"
	(cd "$tree" && ARCH=x86_64 scripts/kconfig/merge_config.sh -n -O "$obj" "${FRAGMENTS[@]}") \
		>"$DEPS/logs/net-config.log" 2>&1 || {
		tail -n 30 "$DEPS/logs/net-config.log" >&2
		die "kernel configuration failed; log: $DEPS/logs/net-config.log"
	}
	"${kmake[@]}" olddefconfig >>"$DEPS/logs/net-config.log" 2>&1 || die "olddefconfig failed; log: $DEPS/logs/net-config.log"
	check_fragments "$obj/.config" "${FRAGMENTS[@]}"
	log "net: configuration verified ($(grep -c '=y' "$obj/.config") options =y)"

	# 4. build vmlinux (long: ~10-20 min on 2 cores)
	local total_hint
	total_hint=$(cat "$DEPS/build/net-objects.count" 2>/dev/null || true)
	log "net: building vmlinux (nice -n $NICE make -j$JOBS vmlinux)${total_hint:+; a full build has ~$total_hint objects}"
	PROGRESS_CMD="echo \$(find $obj -name '*.o' -newer $obj/.config 2>/dev/null | wc -l) objects built${total_hint:+ of ~$total_hint}" \
		with_progress "kernel build" "$DEPS/logs/net-build.log" \
		nice -n "$NICE" "${kmake[@]}" -j"$JOBS" vmlinux
	find "$obj" -name '*.o' | wc -l >"$DEPS/build/net-objects.count"
	local rel
	rel=$(cat "$obj/include/config/kernel.release")
	log "net: built vmlinux $rel"

	# 5. bundle into the libkrunfw ABI, matching the stock library's version number.
	local d=$DEPS/kernels/net abi
	mkdir -p "$d"
	verify_lean || die "bundling the net kernel needs the lean step first (for krunfw_get_version)"
	abi=$(krunfw_abi_version "$DEPS/kernels/lean/libkrunfw.so.5")
	[ -n "$abi" ] || die "cannot read krunfw_get_version from the lean kernel"
	install_atomic "$obj/vmlinux" "$d/vmlinux" 0644
	sha "$d/vmlinux" >"$d/vmlinux.sha256"
	install_atomic "$obj/.config" "$d/config" 0644
	log "net: bundling (krunfw_get_version = $abi)"
	(cd "$ROOT" && go run ./deploy/kernel/bundle -vmlinux "$d/vmlinux" -abi-version "$abi" -o "$d/libkrunfw.so.5") >&2
	ensure_probe
	"$PROBE" "$d/libkrunfw.so.5" >"$d/probe.txt" || die "$d/libkrunfw.so.5 does not load"
	net_inputs_hash "$abi" >"$d/inputs.sha256"
	echo "$rel" >"$d/release"
	tsv_set "$DEPS/kernels/manifest.tsv" net "$(sha "$d/libkrunfw.so.5")" linux "$ver-boxlite-net"
	log "net: linux $ver ($rel) → $d/libkrunfw.so.5"
}

# --- step: qemu-proof (boot the net vmlinux under QEMU/TCG) -------------------------

verify_qemu-proof() {
	local d=$DEPS/kernels/net
	[ -f "$d/qemu-proof.log" ] && [ -f "$d/qemu-proof.ok" ] && [ -f "$d/vmlinux.sha256" ] || return 1
	[ "$(cat "$d/qemu-proof.ok")" = "$(cat "$d/vmlinux.sha256")" ] || return 1
	verify_net
}

do_qemu-proof() {
	verify_net || die "qemu-proof needs the net step first"
	verify_busybox || die "qemu-proof needs the busybox step first"
	ensure_pkgs qemu-system-x86 cpio gzip
	local d=$DEPS/kernels/net work
	work=$(mktemp -d "$DEPS/build/qemu-proof.XXXXXX")
	mkdir -p "$work/root/bin" "$work/root/proc" "$work/root/sys" "$work/root/dev" "$work/root/mnt"
	cp "$DEPS/busybox/busybox" "$work/root/bin/busybox"
	cat >"$work/root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "BOXLITE-QEMU-PROOF uname-r=$(uname -r)"
if [ -e /proc/net/ip_tables_names ]; then ipt=present; else ipt=absent; fi
tables=$(tr '\n' ',' </proc/net/ip_tables_names 2>/dev/null)
cfg=$(zcat /proc/config.gz 2>/dev/null | grep -E '^CONFIG_(IP_NF_IPTABLES|NF_TABLES|BRIDGE|NET_NS|VETH)=' | tr '\n' ' ')
echo "BOXLITE-QEMU-PROOF ip_tables=$ipt tables=[${tables}] config: ${cfg}"
# Some of what lean-parity.config adds, used from inside the guest.
feat=""
mount -t cgroup2 cgroup2 /sys/fs/cgroup && feat="$feat cgroup2"
mkdir -p /mnt/hugetlbfs && mount -t hugetlbfs hugetlbfs /mnt/hugetlbfs && feat="$feat hugetlbfs"
mount -t securityfs securityfs /sys/kernel/security && feat="$feat securityfs"
mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc && feat="$feat binfmt_misc"
[ -e /proc/$$/task/$$/children ] && feat="$feat proc-children"
[ -e /sys/kernel/mm/transparent_hugepage/enabled ] && feat="$feat thp"
ip link add bxdummy0 type dummy && feat="$feat dummy"
echo "BOXLITE-QEMU-PROOF features=[$feat ] cgroup-controllers=[$(cat /sys/fs/cgroup/cgroup.controllers) ]"
for f in /sys/devices/system/cpu/vulnerabilities/*; do
	echo "BOXLITE-QEMU-PROOF vulnerability ${f##*/}: $(cat "$f")"
done
echo "BOXLITE-QEMU-PROOF done"
reboot -f
EOF
	chmod 0755 "$work/root/init"
	(cd "$work/root" && find . | cpio -o -H newc --quiet | gzip -9) >"$work/initramfs.cpio.gz"
	local rel
	rel=$(cat "$d/release")
	log "qemu-proof: booting $rel under qemu-system-x86_64 (TCG, microvm, timeout 120 s)"
	local t0=$SECONDS rc=0
	# reboot=t: with acpi=off there is no power-off device; a triple-fault reset
	# ends QEMU because of -no-reboot.
	timeout 120 qemu-system-x86_64 -M microvm,acpi=off -cpu max -nodefaults -no-user-config \
		-nographic -serial stdio -m 256 -kernel "$d/vmlinux" -initrd "$work/initramfs.cpio.gz" \
		-append "console=ttyS0 panic=-1 reboot=t rdinit=/init" -no-reboot \
		</dev/null >"$work/serial.log" 2>&1 || rc=$?
	tr -d '\r' <"$work/serial.log" >"$d/qemu-proof.log.tmp"
	mv -f "$d/qemu-proof.log.tmp" "$d/qemu-proof.log"
	rm -rf "$work"
	local fail=()
	grep -q "BOXLITE-QEMU-PROOF uname-r=$rel\$" "$d/qemu-proof.log" || fail+=("no marker with uname -r = $rel")
	grep -q "BOXLITE-QEMU-PROOF ip_tables=present" "$d/qemu-proof.log" || fail+=("/proc/net/ip_tables_names missing")
	grep -q "CONFIG_IP_NF_IPTABLES=y" "$d/qemu-proof.log" || fail+=("/proc/config.gz lacks CONFIG_IP_NF_IPTABLES=y")
	local f
	for f in cgroup2 hugetlbfs securityfs binfmt_misc proc-children thp dummy; do
		grep -q "BOXLITE-QEMU-PROOF features=\[.* $f " "$d/qemu-proof.log" || fail+=("$f does not work in the guest")
	done
	grep -q "BOXLITE-QEMU-PROOF .*cgroup-controllers=\[.*hugetlb" "$d/qemu-proof.log" || fail+=("no hugetlb cgroup controller")
	grep -q "BOXLITE-QEMU-PROOF done" "$d/qemu-proof.log" || fail+=("/init did not finish")
	if [ "${#fail[@]}" -gt 0 ]; then
		tail -n 30 "$d/qemu-proof.log" >&2
		die "qemu-proof failed (qemu exit $rc): ${fail[*]}; transcript: $d/qemu-proof.log"
	fi
	grep 'BOXLITE-QEMU-PROOF' "$d/qemu-proof.log" | sed 's/^/  /' >&2
	cp "$d/vmlinux.sha256" "$d/qemu-proof.ok"
	log "qemu-proof: booted and verified in $((SECONDS - t0))s (qemu exit $rc); transcript: $d/qemu-proof.log"
}

# --- step: qemu-engine (what test/libkrun-qemu runs: QEMU, virtiofsd, vsock) ------

# The emulated engine boots the kernel blobs under bookworm's qemu-system-x86
# (installed), with bookworm's C virtiofsd (in qemu-system-common) and sid's
# vhost-device-vsock, which is only downloaded and unpacked (it runs on
# bookworm's glibc: it needs at most GLIBC_2.34 and libgcc_s).
VSOCK_BIN=$DEPS/qemu-engine/vhost-device-vsock

verify_qemu-engine() {
	command -v qemu-system-x86_64 >/dev/null || return 1
	[ -x "$VIRTIOFSD" ] || return 1
	local line
	line=$(tsv_get "$DEPS/manifest.tsv" "$VSOCK_PACKAGE")
	[ -n "$line" ] || return 1
	manifest_ok "$VSOCK_PACKAGE" "$(cut -f2 <<<"$line")" "$VSOCK_BIN" || return 1
	"$VSOCK_BIN" --version >/dev/null 2>&1
}

do_qemu-engine() {
	ensure_pkgs qemu-system-x86
	[ -x "$VIRTIOFSD" ] || die "$VIRTIOFSD is missing: this system's qemu-system-common does not ship the C virtiofsd (Debian 12 does)"
	local deb tmp bin
	deb=$(apt_download "$VSOCK_PACKAGE/$LEAN_SUITE")
	tmp=$(mktemp -d "$DEPS/downloads/.x.XXXXXX")
	dpkg -x "$deb" "$tmp"
	bin=$(find "$tmp" -path "*/bin/vhost-device-vsock" -type f | head -n1)
	[ -n "$bin" ] || {
		rm -rf "$tmp"
		die "$deb holds no vhost-device-vsock"
	}
	install_atomic "$bin" "$VSOCK_BIN"
	rm -rf "$tmp"
	"$VSOCK_BIN" --version >/dev/null 2>&1 ||
		die "$VSOCK_BIN does not run here (ldd: $(ldd "$VSOCK_BIN" 2>&1 | grep -i 'not found\|version' | tr '\n' ' '))"
	manifest_record "$VSOCK_PACKAGE" "$(deb_version "$deb")" "$VSOCK_BIN"
	log "qemu-engine: $(qemu-system-x86_64 --version | head -n1); $VIRTIOFSD; $VSOCK_PACKAGE $(deb_version "$deb") → $VSOCK_BIN"
}

# --- step: dind-image (the docker-in-docker test image's root filesystem) -------

# Debian 12's dockerd and what it runs, made by mmdebstrap from the archive
# into one tar (the OCI image's single layer: test/ocitest.RootfsImage packs
# it). The essential variant (dpkg, coreutils, bash: what maintainer scripts
# need) plus DIND_PACKAGES and their dependencies (mount, not essential in
# bookworm, for the pod's own tmpfs mounts); /usr is merged by mmdebstrap's
# merged-usr hooks (debootstrap's way: they install usr-is-merged, where the
# usrmerge package would pull in all of perl). dpkg leaves out what dockerd
# never reads (docs, manuals, locales, shell completions) and the binaries of
# the packages that dockerd does not run: ctr, containerd-stress, the v1
# shims, libnetwork's dnet and ovrouter. No device nodes (the container's
# /dev is a tmpfs). Rebuilt when any of these inputs change (dind_inputs_hash).
DIND_SUITE=bookworm
DIND_PACKAGES=(docker.io containerd runc tini iptables ca-certificates mount)
DIND_HOOKS=/usr/share/mmdebstrap/hooks/merged-usr
DIND_EXCLUDES=(
	'/usr/share/doc/*' '/usr/share/man/*' '/usr/share/info/*' '/usr/share/locale/*'
	'/usr/share/lintian/*' '/usr/share/bash-completion/*' '/usr/share/zsh/*' '/usr/share/fish/*'
	/usr/bin/ctr /usr/bin/containerd-stress /usr/bin/containerd-shim /usr/bin/containerd-shim-runc-v1
	/usr/bin/dnet /usr/sbin/ovrouter
)
# What the image must hold for dockerd (checked after the build).
DIND_REQUIRED=(usr/sbin/dockerd usr/bin/docker usr/sbin/docker-proxy usr/bin/docker-init usr/bin/containerd
	usr/bin/containerd-shim-runc-v2 usr/sbin/runc usr/sbin/iptables-legacy usr/sbin/iptables-nft
	usr/sbin/ip6tables-legacy usr/sbin/ip6tables-nft etc/ssl/certs/ca-certificates.crt usr/bin/mount)
DIND_ROOTFS=$DEPS/dind/rootfs.tar

dind_inputs_hash() {
	{
		echo "suite=$DIND_SUITE variant=essential hooks=$DIND_HOOKS"
		printf 'package %s\n' "${DIND_PACKAGES[@]}"
		printf 'exclude %s\n' "${DIND_EXCLUDES[@]}"
		printf 'require %s\n' "${DIND_REQUIRED[@]}"
	} | sha256sum | cut -c1-16
}

# The manifest's version for dind-rootfs: docker.io's Debian version, then
# the inputs' hash (so a changed package list is seen as out of date).
verify_dind-image() {
	local line
	line=$(tsv_get "$DEPS/manifest.tsv" dind-rootfs)
	[ -n "$line" ] || return 1
	local v
	v=$(cut -f2 <<<"$line")
	[ "${v##*+inputs.}" = "$(dind_inputs_hash)" ] || return 1
	manifest_ok dind-rootfs "$v" "$DIND_ROOTFS"
}

do_dind-image() {
	command -v mmdebstrap >/dev/null && [ -d "$DIND_HOOKS" ] || ensure_pkgs mmdebstrap
	[ -d "$DIND_HOOKS" ] || die "dind-image: $DIND_HOOKS is missing (mmdebstrap 1.x ships it)"
	local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
	[ -f "$keyring" ] || ensure_pkgs debian-archive-keyring
	local mirror include opts=() e
	mirror=$(debian_mirror)
	include=$(
		IFS=,
		echo "${DIND_PACKAGES[*]}"
	)
	for e in "${DIND_EXCLUDES[@]}"; do opts+=(--dpkgopt="path-exclude=$e"); done
	mkdir -p "$DEPS/dind"
	# Left by an interrupted run: mmdebstrap's chroot may still have proc
	# and sysfs mounted, so those go first, and rm stays on the cache's file
	# system.
	local old m
	for old in "$DEPS"/build/dind.*; do
		[ -d "$old" ] || continue
		for m in $(awk -v d="$old/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
			umount -l "$m" || die "dind-image: cannot unmount $m, left by an interrupted run"
		done
		rm -rf --one-file-system "$old"
	done
	rm -f "$DEPS"/dind/rootfs.tar.tmp.*
	local tmp work
	tmp=$(mktemp "$DIND_ROOTFS.tmp.XXXXXX")
	work=$(mktemp -d "$DEPS/build/dind.XXXXXX")
	log "dind-image: mmdebstrap $DIND_SUITE (essential + ${DIND_PACKAGES[*]}) from $mirror"
	PROGRESS_CMD="" with_progress "mmdebstrap" "$DEPS/logs/dind-image.log" \
		env TMPDIR="$work" mmdebstrap --mode=root --variant=essential --format=tar \
		--include="$include" --hook-dir="$DIND_HOOKS" "${opts[@]}" --skip=output/dev --skip=output/mknod \
		--keyring="$keyring" "$DIND_SUITE" "$tmp" "$mirror"
	rm -rf "$work"
	local listing missing=() f
	listing=$(tar -tf "$tmp")
	for f in "${DIND_REQUIRED[@]}"; do
		grep -qxF "./$f" <<<"$listing" || missing+=("$f")
	done
	if [ "${#missing[@]}" -gt 0 ]; then
		rm -f "$tmp"
		die "dind-image: the root filesystem lacks ${missing[*]}"
	fi
	# Versions of what it holds, for the record (and the docker.io version
	# the manifest names).
	tar -xOf "$tmp" ./var/lib/dpkg/status |
		awk '/^Package:/ {p=$2} /^Version:/ {print p "\t" $2}' | LC_ALL=C sort >"$DEPS/dind/packages.tsv.tmp"
	mv -f "$DEPS/dind/packages.tsv.tmp" "$DEPS/dind/packages.tsv"
	local docker
	docker=$(awk -F'\t' '$1 == "docker.io" {print $2}' "$DEPS/dind/packages.tsv")
	[ -n "$docker" ] || die "dind-image: docker.io is not installed in the root filesystem"
	chmod 0644 "$tmp"
	mv -f "$tmp" "$DIND_ROOTFS"
	manifest_record dind-rootfs "$docker+inputs.$(dind_inputs_hash)" "$DIND_ROOTFS"
	log "dind-image: docker.io $docker, $(wc -l <"$DEPS/dind/packages.tsv") packages, $(($(stat -c %s "$DIND_ROOTFS") / 1048576)) MiB → $DIND_ROOTFS"
}

# --- main ------------------------------------------------------------------------------

run_step() {
	local step=$1 t0=$SECONDS
	if "verify_$step"; then
		log "$step: up to date (verified)"
		return 0
	fi
	# One run per step at a time; a second run waits, then re-verifies.
	exec {lockfd}>"$DEPS/locks/$step.lock"
	if ! flock -n "$lockfd"; then
		log "$step: another deps.sh is working on it; waiting"
		flock "$lockfd"
	fi
	if "verify_$step"; then
		log "$step: up to date (verified)"
	else
		log "$step: provisioning"
		"do_$step"
		"verify_$step" || die "$step: outputs do not verify after provisioning"
		log "$step: done in $((SECONDS - t0))s"
	fi
	exec {lockfd}>&-
}

# --- step: vulndb (the Go vulnerability database, for govulncheck) ----------

verify_vulndb() {
	local d=$DEPS/vulndb
	[ -f "$d/version" ] && [ "$(cat "$d/version")" = "$VULNDB_VERSION" ] &&
		[ -f "$d/osv.sha256" ] && [ "$(vulndb_hash "$d/osv")" = "$(cat "$d/osv.sha256")" ]
}
# vulndb_hash DIR: one SHA-256 over the names and contents of DIR's entries.
vulndb_hash() { (cd "$1" && find . -type f -name '*.json' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1); }
do_vulndb() {
	command -v go >/dev/null || die "go is not on PATH"
	local dir
	dir=$(cd "$DEPS/build" && GOFLAGS=-mod=mod go mod download -json "$VULNDB_MODULE@$VULNDB_VERSION" | awk -F'"' '/"Dir":/ {print $4}')
	[ -d "$dir/data/osv" ] || die "vulndb: $VULNDB_MODULE@$VULNDB_VERSION has no data/osv"
	local stage
	stage=$(mktemp -d "$DEPS/vulndb.stage.XXXXXX")
	mkdir -p "$stage/osv"
	cp "$dir"/data/osv/*.json "$stage/osv/"
	chmod -R u+w "$stage"
	vulndb_hash "$stage/osv" >"$stage/osv.sha256"
	echo "$VULNDB_VERSION" >"$stage/version"
	rm -rf "$DEPS/vulndb"
	mv "$stage" "$DEPS/vulndb"
	log "vulndb: $(ls "$DEPS/vulndb/osv" | wc -l) entries of $VULNDB_MODULE@$VULNDB_VERSION"
}

usage() {
	sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

main() {
	local steps=() a
	[ "$#" -gt 0 ] || set -- all
	for a in "$@"; do
		case $a in
		all) steps+=("${STEPS_ALL[@]}") ;;
		tools | critest | busybox | runc | lean | net | qemu-proof | qemu-engine | vulndb | dind-image) steps+=("$a") ;;
		-h | --help | help) usage ;;
		*)
			echo "unknown step: $a (steps: all ${STEPS_ALL[*]})" >&2
			exit 2
			;;
		esac
	done
	mkdir -p "$DEPS"/{bin,cni/bin,busybox,kernels/lean,kernels/net,qemu-engine,dind,logs,locks,build,downloads}
	local t0=$SECONDS s
	for s in "${steps[@]}"; do run_step "$s"; done
	log "all requested steps verified in $((SECONDS - t0))s: ${steps[*]} (cache: $DEPS)"
}

main "$@"
exit
