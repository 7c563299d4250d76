#!/bin/sh
# tokd's post-removal script, for both .deb (postrm remove|purge|...) and
# .rpm (%postun, $1 = 0 on erase, 1 on upgrade).
set -e

case "$1" in
remove | purge | 0)
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		systemctl daemon-reload || true
	fi
	;;
esac

case "$1" in
purge)
	# Remove the units' enablement links that postinst recorded, system
	# and user ones, as dh_installsystemd does.
	if command -v deb-systemd-helper >/dev/null 2>&1; then
		deb-systemd-helper purge tokd.socket tokd.service >/dev/null || true
		deb-systemd-helper --user purge tokd.socket tokd.service >/dev/null || true
	fi
	# The sealed token cache and its key. The tokd user stays, as Debian
	# recommends: files it owned may remain elsewhere.
	rm -rf /var/lib/tokd /run/tokd
	;;
esac
exit 0
