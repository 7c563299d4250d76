#!/bin/sh
# tokd's post-installation script, for both .deb (postinst configure
# [OLD-VERSION]) and .rpm (%post, $1 = 1 on install, 2 on upgrade).
set -e

# create_user creates the tokd system user and group, with no login shell
# and /var/lib/tokd as home, unless they exist.
create_user() {
	if getent passwd tokd >/dev/null 2>&1; then
		return 0
	fi
	if command -v systemd-sysusers >/dev/null 2>&1; then
		systemd-sysusers tokd.conf
		return 0
	fi
	# useradd is everywhere (Debian's passwd is Priority: required);
	# adduser differs between Debian and RPM distributions.
	nologin=/usr/sbin/nologin
	[ -x "$nologin" ] || nologin=/sbin/nologin
	getent group tokd >/dev/null 2>&1 || groupadd --system tokd
	useradd --system --gid tokd --home-dir /var/lib/tokd --no-create-home \
		--shell "$nologin" --comment "tokd credential daemon" tokd
}

case "$1" in
configure | 1 | 2)
	create_user
	# Record the links enabling the units would make, system and --global
	# user ones, as dh_installsystemd --no-enable does: postrm purge then
	# removes them, even when the administrator made them with systemctl
	# enable. Nothing is enabled here.
	if [ "$1" = configure ] && command -v deb-systemd-helper >/dev/null 2>&1; then
		deb-systemd-helper update-state tokd.socket tokd.service >/dev/null || true
		deb-systemd-helper --user update-state tokd.socket tokd.service >/dev/null || true
	fi
	# systemd reads the new or changed unit files; it is not running in
	# containers and chroots, where there is nothing to tell.
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		systemctl daemon-reload || true
		# On upgrade, a running tokd restarts on the new binary; with
		# tokd.socket active no client sees the socket disappear. A fresh
		# install starts nothing: tokd needs a configuration first.
		if [ -n "${2:-}" ] || [ "$1" = 2 ]; then
			if command -v deb-systemd-invoke >/dev/null 2>&1; then
				deb-systemd-invoke try-restart tokd.service || true
			else
				systemctl try-restart tokd.service || true
			fi
		fi
	fi
	;;
esac
exit 0
