#!/bin/sh
# boot-test.sh DEB boots this machine's own root file system, under a
# throwaway overlay, as a container with systemd as PID 1
# (systemd-nspawn), installs DEB there, and checks the units for real:
#
#   1. tokd.service starts under all its hardening (Type=notify: READY=1
#      arrives), serves /run/tokd/tokd.sock, keeps its state in a 0700
#      /var/lib/tokd owned by the tokd user;
#   2. systemctl reload makes tokd reload its configuration;
#   3. LoadCredential=: tokd.key from /etc/credstore seals the store, and a
#      secret named relatively in tokd.toml is read from
#      $CREDENTIALS_DIRECTORY; tokd reaches a TCP endpoint through the
#      address-family and system-call filters; /metrics answers in full
#      (the process collector reads /proc/self and /proc/stat) while
#      ProtectProc= hides other users' processes;
#   4. the watchdog: with WatchdogSec=4s, tokd keeps running for 10 s;
#   5. socket activation: with only tokd.socket started, a tokctl call
#      starts tokd, which serves the passed socket;
#   6. the per-user units, in a regular user's systemd --user.
#
# Needs root, systemd-nspawn (Debian: systemd-container) and overlayfs.
# The host is not changed: every write goes to a tmpfs that is discarded.
# SKIP="watchdog activation" leaves out checks 4 and 5 (and the user
# socket), the slowest.
set -eu

skip() { case " ${SKIP:-} " in *" $1 "*) echo "boot-test: skipped: $1"; return 0 ;; esac; return 1; }

deb=$(realpath "$1")
work=$(mktemp -d /tmp/tokd-boot-XXXXXX)
root=$work/root
nspawn_pid=
leader=

cleanup() {
	if [ -n "$leader" ]; then
		nsenter -t "$leader" -a systemctl poweroff >/dev/null 2>&1 || true
	fi
	if [ -n "$nspawn_pid" ]; then
		i=0
		while kill -0 "$nspawn_pid" 2>/dev/null && [ $i -lt 20 ]; do
			sleep 0.5
			i=$((i + 1))
		done
		kill "$nspawn_pid" 2>/dev/null || true
	fi
	umount "$root" 2>/dev/null || true
	umount "$work" 2>/dev/null || true
	rmdir "$work" 2>/dev/null || true
}
trap cleanup EXIT

fail() {
	echo "boot-test: FAIL: $*" >&2
	if [ -n "$leader" ]; then
		nsenter -t "$leader" -a journalctl --no-pager -n 30 -u tokd.service >&2 || true
	fi
	exit 1
}
ok() { echo "boot-test: ok: $*"; }

# inside runs a command inside the container.
inside() { nsenter -t "$leader" -a "$@"; }

# The overlay: the host's root file system, read-only underneath.
mount -t tmpfs -o size=1g tmpfs "$work"
mkdir "$work/upper" "$work/work" "$root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$work/upper,workdir=$work/work" "$root"

# Prepare the image: no tokd from the host, the package installed, a
# configuration that needs no network. The unit is enabled, the socket not.
rm -rf "$root/etc/tokd" "$root/var/lib/tokd" "$root/etc/credstore"
cp "$deb" "$root/tmp/tokd.deb"
chroot "$root" dpkg -i /tmp/tokd.deb >/dev/null
cat >"$root/etc/tokd/tokd.toml" <<'EOF'
[profiles.demo]
grant_type = "import"
allowed_uids = [0]
EOF
chroot "$root" systemctl enable tokd.service >/dev/null 2>&1
rm -f "$root/etc/systemd/system/sockets.target.wants/tokd.socket"

systemd-nspawn -D "$root" -b -q --register=no --keep-unit --link-journal=no \
	--console=pipe --uuid="$(tr -d - </proc/sys/kernel/random/uuid)" >"$work/console.log" 2>&1 &
nspawn_pid=$!
# Wait for the container's systemd (PID 1 inside, a child of nspawn on
# the host) to finish booting.
i=0
state=
while [ $i -lt 120 ]; do
	sleep 0.5
	i=$((i + 1))
	leader=$(pgrep -P "$nspawn_pid" -x systemd | head -n 1 || true)
	[ -n "$leader" ] || continue
	state=$(nsenter -t "$leader" -a systemctl is-system-running 2>/dev/null || true)
	case $state in running | degraded) break ;; esac
done
case $state in
running | degraded) ;;
*) fail "the container did not boot (state '$state'): $(cat "$work/console.log")" ;;
esac

# 1. The hardened service.
inside systemctl is-active --quiet tokd.service || fail "tokd.service is not active"
inside tokctl status | grep -q '^demo ' || fail "tokctl status does not list demo"
[ "$(inside stat -c '%U %a' /var/lib/tokd)" = "tokd 700" ] || fail "/var/lib/tokd is not tokd's, 0700"
[ "$(inside stat -c '%U %a' /run/tokd)" = "tokd 755" ] || fail "/run/tokd is not tokd's, 0755"
[ "$(inside stat -c '%a' /run/tokd/tokd.sock)" = 666 ] || fail "the socket is not 0666"
ok "tokd.service runs hardened, serves /run/tokd/tokd.sock, state in /var/lib/tokd"

# 2. Reload.
inside systemctl reload tokd.service || fail "systemctl reload"
sleep 1
inside journalctl -u tokd.service --no-pager | grep -q 'configuration reloaded' || fail "no reload logged"
ok "systemctl reload reloads the configuration"

# 3. Credentials, and a TCP connection out of the sandbox.
inside sh -c 'umask 077; mkdir -p /etc/credstore && head -c 32 /dev/urandom >/etc/credstore/tokd.key && echo s3cret >/etc/credstore/demo.secret'
inside sh -c 'mkdir -p /etc/systemd/system/tokd.service.d && printf "[Service]\nLoadCredential=demo.secret\n" >/etc/systemd/system/tokd.service.d/test.conf'
cat >"$root/etc/tokd/tokd.toml" <<'EOF'
metrics_address = "127.0.0.1:9464"
[profiles.demo]
token_url = "http://127.0.0.1:9/oauth2/v1/token"
client_id = "demo"
client_secret_file = "demo.secret"
grant_type = "client_credentials"
allowed_uids = [0]
EOF
inside systemctl daemon-reload
inside systemctl restart tokd.service || fail "tokd.service does not start with credentials"
sleep 1
inside journalctl -u tokd.service --no-pager -n 20 | grep -q 'store open.*key=credentials' || fail "the sealing key did not come from the credential"
inside journalctl -u tokd.service --no-pager -n 20 | grep -q 'connection refused' || fail "tokd did not reach 127.0.0.1:9 over TCP"
ok "LoadCredential= delivers tokd.key and a relatively named secret; TCP works in the sandbox"
inside curl -fsS http://127.0.0.1:9464/metrics >"$work/metrics" || fail "/metrics does not answer 200 in the sandbox"
grep -q '^process_start_time_seconds ' "$work/metrics" || fail "/metrics lacks process_start_time_seconds"
inside sh -c 'grep -E " /proc .* - proc .*hidepid=(invisible|4)" /proc/$(systemctl show -P MainPID tokd.service)/mountinfo' >/dev/null ||
	fail "tokd sees other users' processes: its /proc is not mounted with hidepid=invisible"
ok "/metrics answers in full; other users' processes are hidden from tokd"

# 4. The watchdog, shortened so that the test stays short.
if ! skip watchdog; then
inside sh -c 'printf "[Service]\nWatchdogSec=4s\n" >/etc/systemd/system/tokd.service.d/watchdog.conf'
inside systemctl daemon-reload
inside systemctl restart tokd.service
sleep 10
[ "$(inside systemctl show -P NRestarts tokd.service)" = 0 ] && inside systemctl is-active --quiet tokd.service ||
	fail "the watchdog killed tokd: it does not send WATCHDOG=1 every WatchdogSec/2"
ok "tokd keeps the watchdog fed"
inside rm /etc/systemd/system/tokd.service.d/watchdog.conf
fi

# 5. Socket activation.
if ! skip activation; then
inside systemctl stop tokd.service
inside systemctl daemon-reload
inside systemctl start tokd.socket || fail "tokd.socket does not start"
inside systemctl is-active --quiet tokd.service && fail "tokd.service runs before any connection"
inside timeout 10 tokctl status >/dev/null || fail "tokctl through the activated socket"
inside systemctl is-active --quiet tokd.service || fail "the connection did not start tokd.service"
inside systemctl restart tokd.service
inside timeout 10 tokctl status >/dev/null || fail "tokctl after a restart under socket activation"
inside systemctl stop tokd.service
inside test -S /run/tokd/tokd.sock || fail "stopping the service removed the socket tokd.socket listens on"
ok "socket activation: tokd.socket starts tokd, which serves the passed socket"
fi

# 6. The per-user units, for a regular user.
inside sh -c 'useradd -m -u 1500 tokdtest && mkdir -p ~tokdtest/.config/tokd &&
	printf "[profiles.demo]\ngrant_type = \"import\"\nallowed_uids = [1500]\n" >~tokdtest/.config/tokd/tokd.toml &&
	chown -R tokdtest: ~tokdtest/.config && systemctl start user@1500.service'
user() { inside runuser -u tokdtest -- env XDG_RUNTIME_DIR=/run/user/1500 "$@"; }
user systemctl --user start tokd.service || fail "the user's tokd.service"
user tokctl status | grep -q '^demo ' || fail "tokctl finds no per-user tokd at its default socket"
inside test -f /home/tokdtest/.local/state/tokd/tokd.db || fail "the user's state is not in ~/.local/state/tokd"
ok "per-user unit: tokd.service in systemd --user"
if ! skip activation; then
	user systemctl --user stop tokd.service
	user systemctl --user start tokd.socket || fail "the user's tokd.socket"
	user timeout 10 tokctl status >/dev/null || fail "tokctl through the user's activated socket"
	ok "per-user unit: tokd.socket in systemd --user"
fi

echo "boot-test: all checks passed"
