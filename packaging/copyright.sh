#!/bin/sh
# copyright.sh [--debian] PACKAGE... prints the package's copyright file:
# tokd's own notice (packaging/copyright), then the licence texts of the Go
# standard library and of every module the given packages link, as
# `go list -deps` sees them for the build's GOOS, GOARCH and CGO_ENABLED.
# Run it from the repository root with the same environment as the build.
#
# With --debian, the Apache License 2.0, which every Debian system has in
# /usr/share/common-licenses, is referred to rather than copied (Debian
# policy 12.5); NOTICE files are still copied in full.
set -eu

debian=
if [ "${1:-}" = --debian ]; then
	debian=1
	shift
fi

cat packaging/copyright

# notices DIR prints the licence and notice files at the top of DIR.
notices() {
	found=
	for f in "$1"/LICENSE* "$1"/LICENCE* "$1"/COPYING* "$1"/NOTICE* "$1"/PATENTS; do
		[ -f "$f" ] || continue
		found=1
		printf '\n%s:\n\n' "$(basename "$f")"
		if [ -n "$debian" ] && head -n 5 "$f" | grep -q 'Apache License' &&
			head -n 5 "$f" | grep -q 'Version 2\.0, January 2004'; then
			echo "Licensed under the Apache License, Version 2.0. On Debian systems,"
			echo "the complete text is in /usr/share/common-licenses/Apache-2.0."
		else
			cat "$f"
		fi
	done
	if [ -z "$found" ]; then
		echo "copyright.sh: no licence file in $1" >&2
		exit 1
	fi
}

printf '\n\n==== The Go standard library, %s ====\n' "$(go env GOVERSION)"
notices "$(go env GOROOT)"

main=$(go list -m)
go list -deps -f '{{with .Module}}{{.Path}} {{.Version}} {{.Dir}}{{end}}' "$@" |
	sort -u |
	while read -r path version dir; do
		[ "$path" = "$main" ] && continue
		printf '\n\n==== %s %s ====\n' "$path" "$version"
		notices "$dir"
	done
