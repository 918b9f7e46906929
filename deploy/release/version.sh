#!/bin/sh
# version.sh prints the version of a release made from the git checkout in
# the current directory (make release uses it):
#
#   HEAD is an annotated tag and the tree is clean   the tag less a leading "v"
#                                                    (v0.2.0 -> 0.2.0)
#   otherwise                                        git describe --always --dirty
#                                                    (v0.2.0-3-g1a2b3c4, 1a2b3c4-dirty)
#
# The second form is the Makefile's VERSION, so a build's -version and its
# release name agree. Outside a git checkout it prints "dev".
set -eu
if ! d=$(git describe --always --dirty 2>/dev/null); then
	echo dev
	exit 0
fi
if t=$(git describe --exact-match HEAD 2>/dev/null) && [ "$d" = "$t" ]; then
	d=${t#v}
fi
echo "$d"
