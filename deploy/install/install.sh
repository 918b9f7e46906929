#!/bin/sh
# local is not POSIX, but dash, busybox ash and bash all have it.
# shellcheck disable=SC3043
# install.sh: install or remove containerd-shim-boxlite-v2 on a node.
#
#   install.sh install   [--root DIR] [--bin DIR] [--restart]
#   install.sh uninstall [--root DIR] [--restart]
#   install.sh verify
#
# It runs from its place in a repository checkout (deploy/install/install.sh,
# binaries from `make` in bin/) or in an unpacked release (`make release`: the
# same layout, plus VERSION and SHA256SUMS at the top). In a release, install
# first checks every file SHA256SUMS lists, and that each file it installs is
# listed (the binaries of --bin too, against bin/NAME), and refuses with the
# list of what does not match; `verify` does only that check.
#
# install places, under ROOT (default /):
#   usr/local/bin/containerd-shim-boxlite-v2, boxlite-vmm, boxlite-agent   (from --bin)
#   etc/boxlite/config.toml        shim config of handler "boxlite"      (kernel lean)
#   etc/boxlite/config-net.toml    shim config of handler "boxlite-net"  (kernel net)
#   etc/containerd/conf.d/boxlite.toml   containerd drop-in with both CRI handlers
# and makes sure etc/containerd/config.toml imports /etc/containerd/conf.d/*.toml:
# it creates a minimal version 3 config when there is none, or adds the import to
# the operator's config (keeping everything else) when it lacks it.
#
# What install created or changed is recorded in ROOT/var/lib/boxlite/install.manifest;
# uninstall undoes exactly that and nothing else. A file install placed and someone
# changed since is left in place (with a note), as is every file install did not place.
# Running install twice changes nothing the second time; uninstall with nothing
# installed does nothing.
#
# containerd is restarted only with --restart: `systemctl restart containerd` (through
# `nsenter --target 1 --mount` when ROOT is not /, as from the installer DaemonSet,
# which runs with hostPID). Without it, restart containerd yourself to load the handlers.
set -eu

PROG=install.sh
IMPORT_PATTERN='/etc/containerd/conf.d/*.toml'
MARK='# added by boxlite install.sh'
BINARIES='containerd-shim-boxlite-v2 boxlite-vmm boxlite-agent'

usage() {
	cat <<EOF
usage: $PROG install   [--root DIR] [--bin DIR] [--restart]
       $PROG uninstall [--root DIR] [--restart]
       $PROG verify    (in an unpacked release: check its files against SHA256SUMS)

  --root DIR   install into DIR instead of / (DIR must exist)
  --bin DIR    directory holding $BINARIES
               (default: bin/ of the repository or unpacked release, $DEFAULT_BIN)
  --restart    restart containerd afterwards (systemctl); otherwise do it yourself
EOF
}

die() {
	echo "$PROG: error: $*" >&2
	exit 1
}

usage_error() {
	echo "$PROG: error: $*" >&2
	usage >&2
	exit 2
}

note() {
	echo "$PROG: $*"
}

script_dir=$(cd "$(dirname "$0")" && pwd)
DEPLOY_DIR=$(cd "$script_dir/.." && pwd)
# TOP holds deploy/ and bin/: a repository checkout or an unpacked release.
TOP=$(cd "$script_dir/../.." && pwd)
DEFAULT_BIN=$TOP/bin
# An unpacked release has VERSION and SHA256SUMS at its top; a checkout has neither.
RELEASE=0
if [ -e "$TOP/SHA256SUMS" ] || [ -e "$TOP/VERSION" ]; then
	RELEASE=1
fi

# ---- arguments ---------------------------------------------------------------

CMD=
ROOT=/
BIN=$DEFAULT_BIN
RESTART=0
while [ $# -gt 0 ]; do
	case $1 in
	install | uninstall | verify)
		[ -z "$CMD" ] || usage_error "more than one subcommand ($CMD, $1)"
		CMD=$1
		;;
	--root)
		[ $# -ge 2 ] || usage_error "--root needs a directory"
		ROOT=$2
		shift
		;;
	--root=*) ROOT=${1#--root=} ;;
	--bin)
		[ $# -ge 2 ] || usage_error "--bin needs a directory"
		BIN=$2
		shift
		;;
	--bin=*) BIN=${1#--bin=} ;;
	--restart) RESTART=1 ;;
	-h | --help | help)
		usage
		exit 0
		;;
	-*) usage_error "unknown option '$1'" ;;
	*) usage_error "unknown subcommand '$1' (known: install, uninstall, verify)" ;;
	esac
	shift
done
[ -n "$CMD" ] || usage_error "no subcommand given (install, uninstall or verify)"

[ -n "$ROOT" ] || usage_error "--root is empty"
[ -d "$ROOT" ] || die "--root $ROOT is not a directory"
ROOT=$(cd "$ROOT" && pwd)
# R is ROOT without a trailing slash: host paths are "$R/etc/...".
R=${ROOT%/}

MANIFEST_REL=var/lib/boxlite/install.manifest
MANIFEST=$R/$MANIFEST_REL
CONFIG_REL=etc/containerd/config.toml
CONFIG=$R/$CONFIG_REL

# ---- helpers -----------------------------------------------------------------

sha() {
	sha256sum <"$1" | cut -d' ' -f1
}

b64() {
	printf '%s' "$1" | base64 | tr -d '\n'
}

unb64() {
	printf '%s' "$1" | base64 -d
}

# The manifest being built, one record a line:
#   dir REL                       a directory install created
#   file REL SHA256               a file install placed, with its content then
#   config-created REL SHA256     containerd's config.toml, created by install
#   config-edited REL B64OLD B64NEW   a line of config.toml install changed
#                                 (B64OLD "-": install inserted the line B64NEW)
NEW_MANIFEST=

record() {
	NEW_MANIFEST="$NEW_MANIFEST$*
"
}

# old_record KIND REL prints the rest of that record in the existing manifest.
old_record() {
	[ -f "$MANIFEST" ] || return 0
	awk -v k="$1" -v p="$2" '$1 == k && $2 == p { $1 = ""; $2 = ""; sub(/^  /, ""); print; exit }' "$MANIFEST"
}

write_manifest() {
	local tmp
	if [ -f "$MANIFEST" ] && printf '%s' "$NEW_MANIFEST" | cmp -s - "$MANIFEST"; then
		return 0
	fi
	tmp=$R/var/lib/boxlite/.install.manifest.tmp
	printf '%s' "$NEW_MANIFEST" >"$tmp"
	chmod 0644 "$tmp"
	mv -f "$tmp" "$MANIFEST"
}

# on_exit STATUS, after a failed install, writes a manifest that is the union
# of the records made so far and those of the previous manifest.
on_exit() {
	[ "$1" -ne 0 ] || return 0
	[ -d "$R/var/lib/boxlite" ] || return 0
	if [ -f "$MANIFEST" ]; then
		NEW_MANIFEST=$(printf '%s' "$NEW_MANIFEST" | awk -v old="$MANIFEST" '
			{ seen[$1 " " $2] = 1; print }
			END { while ((getline l < old) > 0) { split(l, f, " "); if (!((f[1] " " f[2]) in seen)) print l } }')
		NEW_MANIFEST="$NEW_MANIFEST
"
	fi
	write_manifest
	echo "$PROG: install failed part way; what it did is recorded in $MANIFEST: \`$PROG uninstall\` undoes it" >&2
}

# dest_ok REL fails unless each existing component of ROOT/REL's directory is
# a directory (so that install will not fail part way on it).
dest_ok() {
	local rel d old_ifs part
	rel=$(dirname "$1")
	d=$R
	old_ifs=$IFS
	IFS=/
	# shellcheck disable=SC2086
	set -- $rel
	IFS=$old_ifs
	for part in "$@"; do
		d=$d/$part
		if [ -e "$d" ] && [ ! -d "$d" ]; then
			die "$d is not a directory; install needs it as one (nothing was changed)"
		fi
	done
}

# mkdirs REL creates ROOT/REL and its missing parents, recording each one it
# creates (or that an earlier install recorded).
mkdirs() {
	local rel part old_ifs
	rel=
	old_ifs=$IFS
	IFS=/
	# shellcheck disable=SC2086
	set -- $1
	IFS=$old_ifs
	for part in "$@"; do
		[ -n "$part" ] || continue
		rel=${rel:+$rel/}$part
		if [ ! -d "$R/$rel" ]; then
			mkdir -m 0755 "$R/$rel"
			record dir "$rel"
		elif [ -f "$MANIFEST" ] && grep -qxF "dir $rel" "$MANIFEST"; then
			case $NEW_MANIFEST in
			*"dir $rel
"*) ;;
			*) record dir "$rel" ;;
			esac
		fi
	done
}

# place SRC REL MODE installs SRC as ROOT/REL unless the file there belongs to
# the operator (present and not placed by install, or changed since).
place() {
	local src rel mode dst want prev have tmp
	src=$1 rel=$2 mode=$3
	dst=$R/$rel
	want=$(sha "$src")
	mkdirs "$(dirname "$rel")"
	prev=$(old_record file "$rel")
	if [ -e "$dst" ] || [ -L "$dst" ]; then
		have=
		[ -f "$dst" ] && have=$(sha "$dst")
		if [ -z "$prev" ]; then
			if [ "$have" = "$want" ]; then
				note "/$rel: already present with the same content, not installed by this script: left as it is"
			else
				note "/$rel: present and not installed by this script: left as it is (remove it and rerun to get ours)"
			fi
			return 0
		fi
		if [ "$have" != "$prev" ]; then
			note "/$rel: changed since install: left as it is"
			record file "$rel" "$prev"
			return 0
		fi
		if [ "$have" = "$want" ] && [ "$(stat -c %a "$dst")" = "${mode#0}" ]; then
			record file "$rel" "$want"
			return 0
		fi
	fi
	tmp=$(dirname "$dst")/.$(basename "$dst").boxlite-tmp
	if ! { cp "$src" "$tmp" && chmod "$mode" "$tmp" && mv -f "$tmp" "$dst"; }; then
		rm -f "$tmp"
		die "could not install /$rel"
	fi
	record file "$rel" "$want"
	note "installed /$rel"
}

# top_level FILE prints the lines of a TOML file before its first table header.
top_level() {
	awk '/^[[:space:]]*\[/ { exit } { print }' "$1"
}

imports_conf_d() {
	top_level "$1" | grep -Eq "[\"']((/etc/containerd/)|(\\./)?)conf\\.d/\\*\\.toml[\"']"
}

# replace_line FILE OLD NEW replaces the first line equal to OLD (or inserts
# NEW after line N when OLD is "@N"), keeping FILE's inode, mode and owner.
replace_line() {
	local file old new tmp
	file=$1 old=$2 new=$3
	tmp=$(dirname "$file")/.$(basename "$file").boxlite-tmp
	case $old in
	@*) awk -v n="${old#@}" -v new="$new" 'NR == n + 0 && n + 0 > 0 { print; print new; next } NR == 1 && n + 0 == 0 { print new } { print } END { if (NR == 0) print new }' "$file" >"$tmp" ;;
	*) awk -v old="$old" -v new="$new" '!done && $0 == old { print new; done = 1; next } { print }' "$file" >"$tmp" ;;
	esac
	cat "$tmp" >"$file"
	rm -f "$tmp"
}

# plan_import decides how config.toml gets the import, without writing:
# sets IMPORT_ACTION to none | create | insert | edit, and IMPORT_OLD/IMPORT_NEW.
plan_import() {
	local prev imports n
	IMPORT_ACTION=none IMPORT_OLD='' IMPORT_NEW=''
	if [ ! -e "$CONFIG" ]; then
		IMPORT_ACTION=create
		return 0
	fi
	[ -f "$CONFIG" ] || die "/$CONFIG_REL is not a regular file"
	prev=$(old_record config-edited "$CONFIG_REL")
	if [ -n "$prev" ]; then
		# Ours from an earlier install: keep the record while our line is there.
		IMPORT_OLD=${prev%% *} IMPORT_NEW=${prev#* }
		if grep -qxF -- "$(unb64 "$IMPORT_NEW")" "$CONFIG"; then
			IMPORT_ACTION=keep
			return 0
		fi
	fi
	if imports_conf_d "$CONFIG"; then
		return 0
	fi
	imports=$(top_level "$CONFIG" | grep -E '^[[:space:]]*imports[[:space:]]*=' || true)
	if [ -z "$imports" ]; then
		IMPORT_ACTION=insert
		IMPORT_NEW="imports = [\"$IMPORT_PATTERN\"] $MARK"
		n=$(top_level "$CONFIG" | awk '/^[[:space:]]*version[[:space:]]*=/ { print NR; exit }')
		IMPORT_OLD=@${n:-0}
		return 0
	fi
	if [ "$(printf '%s\n' "$imports" | wc -l)" -ne 1 ] ||
		! printf '%s\n' "$imports" | grep -Eq '^[[:space:]]*imports[[:space:]]*=[[:space:]]*\[[^]#]*\][[:space:]]*(#.*)?$'; then
		die "/$CONFIG_REL has an imports list this script cannot extend safely; add \"$IMPORT_PATTERN\" to it yourself and rerun (nothing was changed)"
	fi
	IMPORT_ACTION=edit
	IMPORT_OLD=$imports
	if printf '%s\n' "$imports" | grep -Eq '\[[[:space:]]*\]'; then
		IMPORT_NEW=$(printf '%s\n' "$imports" | sed "s|\\[[[:space:]]*\\]|[\"$IMPORT_PATTERN\"]|")
	else
		IMPORT_NEW=$(printf '%s\n' "$imports" | sed "s|[[:space:]]*\\]|, \"$IMPORT_PATTERN\"]|")
	fi
	IMPORT_NEW="$IMPORT_NEW $MARK"
}

apply_import() {
	case $IMPORT_ACTION in
	none)
		if [ -n "$(old_record config-created "$CONFIG_REL")" ]; then
			record config-created "$CONFIG_REL" "$(old_record config-created "$CONFIG_REL")"
		fi
		;;
	keep)
		record config-edited "$CONFIG_REL" "$IMPORT_OLD" "$IMPORT_NEW"
		;;
	create)
		mkdirs etc/containerd
		tmp=$R/etc/containerd/.config.toml.boxlite-tmp
		cat >"$tmp" <<EOF
# containerd configuration created by boxlite install.sh, which found none.
# It only imports the drop-in files of conf.d/ (boxlite.toml among them);
# containerd's defaults apply to everything else. \`install.sh uninstall\`
# removes this file again unless it was changed.
version = 3
imports = ["$IMPORT_PATTERN"]
EOF
		chmod 0644 "$tmp"
		mv -f "$tmp" "$CONFIG"
		record config-created "$CONFIG_REL" "$(sha "$CONFIG")"
		note "created /$CONFIG_REL (imports $IMPORT_PATTERN)"
		;;
	insert | edit)
		replace_line "$CONFIG" "$IMPORT_OLD" "$IMPORT_NEW"
		if [ "$IMPORT_ACTION" = insert ]; then
			record config-edited "$CONFIG_REL" - "$(b64 "$IMPORT_NEW")"
		else
			record config-edited "$CONFIG_REL" "$(b64 "$IMPORT_OLD")" "$(b64 "$IMPORT_NEW")"
		fi
		note "/$CONFIG_REL: added the import of $IMPORT_PATTERN"
		;;
	esac
}

restart_containerd() {
	[ "$RESTART" = 1 ] || {
		note "containerd was not restarted: restart it (e.g. systemctl restart containerd) for the change to take effect"
		return 0
	}
	if [ "$ROOT" = / ]; then
		if command -v systemctl >/dev/null 2>&1; then
			note "restarting containerd: systemctl restart containerd"
			systemctl restart containerd
			return
		fi
	elif command -v nsenter >/dev/null 2>&1; then
		note "restarting containerd on the host: nsenter --target 1 --mount -- systemctl restart containerd"
		nsenter --target 1 --mount -- systemctl restart containerd
		return
	fi
	note "--restart: no systemctl here (nor nsenter for --root $ROOT): restart containerd on the node yourself with your service manager"
}

# ---- release verification ----------------------------------------------------

# LISTED holds "SHA256 REL" for each well-formed line of the release's
# SHA256SUMS, VERIFIED the same for those whose file matched (verify_release).
LISTED=
VERIFIED=

# listed_sum REL prints the SHA-256 that SHA256SUMS gives REL ("" if none).
listed_sum() {
	printf '%s' "$LISTED" | awk -v p="$1" 'substr($0, length($1) + 2) == p { print $1; exit }'
}

# verify_release checks an unpacked release before anything is installed:
# every line of SHA256SUMS ("SHA256  PATH", as sha256sum writes it) is well
# formed and names a regular file below TOP with that content, and every file
# install takes is listed; the binaries of a --bin other than the release's
# bin/ must match bin/NAME's entry. It dies listing every problem found.
verify_release() {
	local sums problems n line sum rest rel got want b
	sums=$TOP/SHA256SUMS
	[ -f "$sums" ] || die "$TOP is an unpacked release (it has VERSION) but no SHA256SUMS: refusing to install files that cannot be verified; unpack the release tarball again"
	problems=
	n=0
	while IFS= read -r line || [ -n "$line" ]; do
		n=$((n + 1))
		sum=${line%% *}
		rest=${line#"$sum"}
		rel=
		case $rest in
		"  "?*) rel=${rest#  } ;;
		" *"?*) rel=${rest# ?} ;;
		esac
		case $sum in
		*[!0-9a-f]*) sum= ;;
		esac
		case $rel in
		/* | ./* | ../* | */./* | */../* | */. | */.. | . | ..) rel= ;;
		esac
		if [ ${#sum} -ne 64 ] || [ -z "$rel" ]; then
			problems="$problems
  SHA256SUMS line $n is not a SHA-256 and a relative path inside the release: $line"
			continue
		fi
		LISTED="$LISTED$sum $rel
"
		if [ -L "$TOP/$rel" ] || [ ! -f "$TOP/$rel" ]; then
			problems="$problems
  $rel: listed in SHA256SUMS but missing, or not a regular file"
			continue
		fi
		got=$(sha "$TOP/$rel")
		if [ "$got" != "$sum" ]; then
			problems="$problems
  $rel: SHA-256 $got, SHA256SUMS says $sum"
			continue
		fi
		VERIFIED="$VERIFIED$sum $rel
"
	done <"$sums"
	for rel in deploy/install/install.sh deploy/containerd/boxlite.toml deploy/boxlite/config.toml deploy/boxlite/config-net.toml; do
		[ -n "$(listed_sum "$rel")" ] || problems="$problems
  $rel: not listed in SHA256SUMS"
	done
	for b in $BINARIES; do
		want=$(listed_sum "bin/$b")
		if [ -z "$want" ]; then
			problems="$problems
  bin/$b: not listed in SHA256SUMS"
		elif [ "$(cd "$BIN" && pwd)" != "$TOP/bin" ] && [ -f "$BIN/$b" ]; then
			got=$(sha "$BIN/$b")
			[ "$got" = "$want" ] || problems="$problems
  $BIN/$b (--bin): SHA-256 $got, SHA256SUMS says $want for bin/$b"
		fi
	done
	if [ -n "$problems" ]; then
		die "release $(release_version) does not match its SHA256SUMS ($sums); nothing was installed:$problems
The release is damaged or was changed after it was made: unpack it again from a tarball whose checksum matches (sha256sum -c boxlite-shim-VERSION-linux-amd64.tar.gz.sha256)."
	fi
	note "release $(release_version): $(printf '%s' "$VERIFIED" | wc -l | tr -d ' ') files match SHA256SUMS"
}

# release_version prints the first line of the release's VERSION file.
release_version() {
	if [ -f "$TOP/VERSION" ]; then
		awk 'NR == 1 { print; exit }' "$TOP/VERSION"
	else
		echo "(no VERSION file)"
	fi
}

# ---- install -----------------------------------------------------------------

do_install() {
	# Check everything before writing anything.
	[ -d "$BIN" ] || die "--bin $BIN is not a directory (build with \`make\`, or name the directory holding $BINARIES)"
	for b in $BINARIES; do
		[ -f "$BIN/$b" ] || die "$BIN/$b is missing (build with \`make\`, or pass --bin DIR)"
	done
	for f in containerd/boxlite.toml boxlite/config.toml boxlite/config-net.toml; do
		[ -f "$DEPLOY_DIR/$f" ] || die "$DEPLOY_DIR/$f is missing: run this script from its place in the boxlite tree"
	done
	if [ "$RELEASE" = 1 ]; then
		verify_release
	fi
	if [ -e "$MANIFEST" ] && [ ! -f "$MANIFEST" ]; then
		die "$MANIFEST is not a regular file"
	fi
	for rel in usr/local/bin/x etc/boxlite/x etc/containerd/conf.d/x $MANIFEST_REL; do
		dest_ok "$rel"
	done
	plan_import

	# From here on, a failure still leaves a manifest covering what was done
	# (and what earlier installs did), so that uninstall can undo it.
	trap 'on_exit $?' EXIT
	mkdirs var/lib/boxlite
	for b in $BINARIES; do
		place "$BIN/$b" "usr/local/bin/$b" 0755
	done
	place "$DEPLOY_DIR/boxlite/config.toml" etc/boxlite/config.toml 0644
	place "$DEPLOY_DIR/boxlite/config-net.toml" etc/boxlite/config-net.toml 0644
	place "$DEPLOY_DIR/containerd/boxlite.toml" etc/containerd/conf.d/boxlite.toml 0644
	apply_import
	write_manifest
	note "boxlite installed under $ROOT (manifest /$MANIFEST_REL)"
	restart_containerd
}

# ---- uninstall ---------------------------------------------------------------

do_uninstall() {
	if [ ! -f "$MANIFEST" ]; then
		note "nothing to uninstall: no manifest at $MANIFEST"
		return 0
	fi
	while read -r kind rel a b; do
		case $kind in
		file)
			dst=$R/$rel
			if [ ! -e "$dst" ]; then
				continue
			elif [ -f "$dst" ] && [ "$(sha "$dst")" = "$a" ]; then
				rm -f "$dst"
				note "removed /$rel"
			else
				note "/$rel: changed since install: left in place"
			fi
			;;
		config-created)
			dst=$R/$rel
			if [ ! -e "$dst" ]; then
				continue
			elif [ -f "$dst" ] && [ "$(sha "$dst")" = "$a" ]; then
				rm -f "$dst"
				note "removed /$rel (install had created it)"
			else
				note "/$rel: created by install but changed since: left in place"
			fi
			;;
		config-edited)
			dst=$R/$rel
			new=$(unb64 "$b")
			if [ -f "$dst" ] && grep -qxF -- "$new" "$dst"; then
				if [ "$a" = - ]; then
					tmp=$(dirname "$dst")/.$(basename "$dst").boxlite-tmp
					awk -v l="$new" '!done && $0 == l { done = 1; next } { print }' "$dst" >"$tmp"
					cat "$tmp" >"$dst"
					rm -f "$tmp"
				else
					replace_line "$dst" "$new" "$(unb64 "$a")"
				fi
				note "/$rel: removed the import install had added"
			else
				note "/$rel: the import line install added is gone or changed: left as it is"
			fi
			;;
		esac
	done <"$MANIFEST"
	dirs=$(awk '$1 == "dir" { print $2 }' "$MANIFEST")
	rm -f "$MANIFEST"
	# Directories install created, deepest first; only if empty.
	for d in $(printf '%s\n' "$dirs" | awk -F/ 'NF { print NF, $0 }' | sort -rn | cut -d' ' -f2-); do
		if [ -d "$R/$d" ]; then
			rmdir "$R/$d" 2>/dev/null || note "/$d: not empty, left in place"
		fi
	done
	note "boxlite uninstalled from $ROOT"
	restart_containerd
}

do_verify() {
	[ "$RELEASE" = 1 ] || die "$TOP is not an unpacked release (no VERSION or SHA256SUMS there): nothing to verify"
	[ -d "$BIN" ] || die "--bin $BIN is not a directory"
	verify_release
}

case $CMD in
install) do_install ;;
uninstall) do_uninstall ;;
verify) do_verify ;;
esac
