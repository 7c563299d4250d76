#!/bin/sh
# tokd's pre-removal script, for both .deb (prerm remove|upgrade|...) and
# .rpm (%preun, $1 = 0 on erase, 1 on upgrade).
set -e

case "$1" in
remove | 0)
	# Stop the socket first, so that nothing activates tokd again.
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		if command -v deb-systemd-invoke >/dev/null 2>&1; then
			deb-systemd-invoke stop tokd.socket tokd.service || true
		else
			systemctl stop tokd.socket tokd.service || true
		fi
	fi
	;;
esac
exit 0
