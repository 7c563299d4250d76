#!/usr/bin/env bash
# bench/run.sh: whole-process latency of tokctl's exec path against its
# floors and against git's own daemon-plus-socket helper, cached token,
# every command run N times (default 1000) interleaved in one run, one
# table. Results and the machine they came from: docs/BENCHMARKS.md.
#
#   bench/run.sh              # N=1000, about a minute after the build
#   N=3000 bench/run.sh       # more runs for a steadier p99
#
# It builds tokd, tokctl, bench/trivial, bench/hello, bench/minclient and
# bench/latency as the Makefile's release build does (CGO_ENABLED=0 go build
# -trimpath -ldflags='-s -w'), starts
# `tokd --dev` on a private socket, waits until `tokctl status` answers
# and the demo token is cached, starts git's credential-cache daemon
# holding the same token, and runs bench/latency. Everything it starts is
# stopped and everything it makes is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-1000}
WARMUP=${WARMUP:-20}
READY_DEADLINE=${READY_DEADLINE:-60} # seconds for tokd --dev to serve the demo token
RUN_DEADLINE=${RUN_DEADLINE:-270}    # seconds for the measurement itself

work=$(mktemp -d /tmp/tokd-bench.XXXXXX) # 0700: tokd refuses a socket directory others may write
tokd_pid=
gcc_sock=$work/gcc/socket
cleanup() {
	if [[ -n $tokd_pid ]]; then
		kill -TERM "$tokd_pid" 2>/dev/null || true
		wait "$tokd_pid" 2>/dev/null || true
	fi
	if [[ -S $gcc_sock ]]; then
		HOME=$work/home git credential-cache --socket "$gcc_sock" exit </dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bin=$work/bin
echo "building (CGO_ENABLED=0 go build -trimpath -ldflags='-s -w') ..." >&2
CGO_ENABLED=0 timeout 300 go build -trimpath -ldflags='-s -w' -o "$bin/" \
	./cmd/tokd ./cmd/tokctl ./bench/trivial ./bench/hello ./bench/minclient ./bench/latency

# tokd --dev: in-process identity-domain emulator and a demo profile.
# Readiness: poll `tokctl status` (it exits 0 once tokd serves the socket,
# which tokd binds only after its store is open, i.e. at READY), then one
# `tokctl get demo`, which waits for the demo profile's first fetch. This
# needs nothing beyond tokctl itself; bench/scale shows the NOTIFY_SOCKET
# way, with a listener in Go rather than socat.
sock=$work/s/tokd.sock
mkdir -m 700 "$work/s"
"$bin/tokd" --dev --socket "$sock" --state-dir "$work/state" --log-level warn \
	>"$work/tokd.out" 2>"$work/tokd.err" &
tokd_pid=$!
deadline=$((SECONDS + READY_DEADLINE))
until "$bin/tokctl" --socket "$sock" status >/dev/null 2>&1; do
	if ! kill -0 "$tokd_pid" 2>/dev/null; then
		echo "tokd --dev exited before serving:" >&2
		cat "$work/tokd.err" >&2
		exit 1
	fi
	if ((SECONDS >= deadline)); then
		echo "tokd --dev did not serve within ${READY_DEADLINE}s" >&2
		exit 1
	fi
	sleep 0.05
done
token=$(timeout "$READY_DEADLINE" "$bin/tokctl" --socket "$sock" get demo)
[[ -n $token ]] || { echo "tokctl get demo printed no token" >&2; exit 1; }
printf '%s\n' "$token" >"$work/token"

# git's credential-cache daemon, holding the same credential, in an empty
# HOME with no system config so that nothing else git reads differs
# between runs. The "no daemon" row runs the same git against a socket
# that does not exist (git then answers nothing and exits 0): the
# difference of the two rows is what git's round trip to its daemon
# costs, to set beside minclient's to tokd.
mkdir -p -m 700 "$work/home" "$work/gcc"
export GIT_CONFIG_NOSYSTEM=1
printf 'protocol=https\nhost=git.example.com\nusername=oauth2\npassword=%s\n\n' "$token" |
	HOME=$work/home git credential-cache --timeout 3600 --socket "$gcc_sock" store
got=$(printf 'protocol=https\nhost=git.example.com\n\n' |
	HOME=$work/home git credential-cache --socket "$gcc_sock" get)
[[ $got == *"password=$token"* ]] || { echo "git credential-cache did not keep the credential" >&2; exit 1; }

git_bin=$(command -v git)
cat_bin=$(command -v cat)
gitreq='protocol=https\nhost=git.example.com\n\n'
kubeinfo='{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"spec\":{\"interactive\":false}}'
cat >"$work/spec.json" <<EOF
[
  {"name": "tokctl get demo", "argv": ["$bin/tokctl", "get", "demo"],
   "env": ["TOKD_SOCKET=$sock"], "expect": "$token"},
  {"name": "tokctl git-credential get", "argv": ["$bin/tokctl", "git-credential", "get"],
   "stdin": "$gitreq", "env": ["TOKD_SOCKET=$sock"], "expect": "password=$token"},
  {"name": "tokctl kubectl-credential demo", "argv": ["$bin/tokctl", "kubectl-credential", "demo"],
   "env": ["TOKD_SOCKET=$sock", "KUBERNETES_EXEC_INFO=$kubeinfo"], "expect": "$token"},
  {"name": "cat token file", "argv": ["$cat_bin", "$work/token"], "expect": "$token"},
  {"name": "trivial Go binary", "argv": ["$bin/trivial"], "expect": "hello, world"},
  {"name": "Go hello without fmt", "argv": ["$bin/hello"], "expect": "hello, world"},
  {"name": "minimal Go client of tokd", "argv": ["$bin/minclient", "demo"],
   "env": ["TOKD_SOCKET=$sock"], "expect": "$token"},
  {"name": "git credential-cache get", "argv": ["$git_bin", "credential-cache", "--socket", "$gcc_sock", "get"],
   "stdin": "$gitreq", "env": ["HOME=$work/home"], "expect": "password=$token"},
  {"name": "git credential-cache get, no daemon", "argv": ["$git_bin", "credential-cache", "--socket", "$work/gcc/none", "get"],
   "stdin": "$gitreq", "env": ["HOME=$work/home"]}
]
EOF

echo "measuring: $N runs of each command, interleaved ..." >&2
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "$(git --version), $(go version | cut -d' ' -f3-), tokd built from $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!bench' ':!docs' || echo '+uncommitted')"
timeout "$RUN_DEADLINE" "$bin/latency" -spec "$work/spec.json" -n "$N" -warmup "$WARMUP" \
	-ref 'trivial Go binary' \
	-target 'tokctl get demo / git credential-cache get <= 1.0' \
	-target 'tokctl get demo / trivial Go binary <= 1.5'
echo "load average (1, 5, 15 min) before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs"
