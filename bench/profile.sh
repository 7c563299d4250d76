#!/usr/bin/env bash
# bench/profile.sh: where the time goes, before anyone optimises.
#
#  1. tokctl against its floors, per process: perf stat's software counters
#     (task-clock, page faults, context switches; this VM exposes no
#     hardware counters) and valgrind's instruction counts (callgrind), with
#     tokctl's instructions summed per Go package.
#  2. tokd under the throughput benchmark at 64 clients, keep-alive and
#     one connection per request from the lean load generator (the raw
#     modes, which leave the cores to tokd): a pprof CPU profile of tokd
#     alone.
#  3. tokd's system calls per token (strace -c on the daemon while one
#     client asks in a loop), in each of the benchmark's four modes.
#
# Needs linux-perf, valgrind and strace (Debian packages); a missing tool's
# part is skipped with a message. About a minute and a half.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-300}
work=$(mktemp -d /tmp/tokd-prof.XXXXXX)
tokd_pid=
cleanup() {
	if [[ -n $tokd_pid ]]; then
		kill -TERM "$tokd_pid" 2>/dev/null || true
		wait "$tokd_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bin=$work/bin
# Symbols are kept (no -ldflags='-s -w' as in the Makefile's release
# build) so that callgrind can name functions; stripping changes neither
# the page faults nor the instruction counts of tokctl (measured).
echo "building (CGO_ENABLED=0 go build -trimpath) ..." >&2
CGO_ENABLED=0 timeout 300 go build -trimpath -o "$bin/" \
	./cmd/tokd ./cmd/tokctl ./bench/trivial ./bench/hello ./bench/minclient ./bench/throughput

sock=$work/s/tokd.sock
mkdir -m 700 "$work/s"
"$bin/tokd" --dev --socket "$sock" --state-dir "$work/state" --log-level warn >"$work/tokd.out" 2>"$work/tokd.err" &
tokd_pid=$!
deadline=$((SECONDS + 60))
until "$bin/tokctl" --socket "$sock" status >/dev/null 2>&1; do
	((SECONDS < deadline)) && kill -0 "$tokd_pid" 2>/dev/null || { echo "tokd --dev did not start" >&2; cat "$work/tokd.err" >&2; exit 1; }
	sleep 0.05
done
export TOKD_SOCKET=$sock
"$bin/tokctl" get demo >/dev/null
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs"

names=("Go hello without fmt" "trivial Go binary" "minimal Go client of tokd" "tokctl get demo")
cmds=("$bin/hello" "$bin/trivial" "$bin/minclient demo" "$bin/tokctl get demo")
last=$((${#cmds[@]} - 1)) # tokctl, whose instructions are summed by package

echo
echo "== 1a. perf stat, $RUNS runs each (software counters; means)"
if command -v perf >/dev/null; then
	printf '%-28s %14s %12s %18s %12s\n' command "task-clock ms" "page faults" "context switches" "elapsed ms"
	for i in "${!cmds[@]}"; do
		# shellcheck disable=SC2086 # the command line is split on purpose
		perf stat -x, -e task-clock,page-faults,context-switches -r "$RUNS" -o "$work/perf.csv" ${cmds[$i]} >/dev/null
		t0=$(date +%s%N)
		for ((r = 0; r < 100; r++)); do ${cmds[$i]} >/dev/null; done
		elapsed=$(( ($(date +%s%N) - t0) / 100 ))
		awk -F, -v name="${names[$i]}" -v el="$elapsed" '
			$3 == "task-clock" { tc = $1 }
			$3 == "page-faults" { pf = $1 }
			$3 == "context-switches" { cs = $1 }
			END { printf "%-28s %14.3f %12.0f %18.1f %12.3f\n", name, tc, pf, cs, el / 1e6 }' "$work/perf.csv"
	done
	echo "(elapsed: mean of 100 runs from bash, including its fork; bench/run.sh has the careful figures)"
else
	echo "perf not installed (Debian package linux-perf): skipped"
fi

echo
echo "== 1b. valgrind --tool=callgrind: user-space instructions per process (median of 5 runs)"
if command -v valgrind >/dev/null; then
	# Go's asynchronous preemption signals trip callgrind's signal
	# bookkeeping (an assertion in threads.c); without them it runs. The
	# count varies from run to run with the scheduler's spinning.
	for i in "${!cmds[@]}"; do
		counts=()
		for r in 1 2 3 4 5; do
			# shellcheck disable=SC2086
			GODEBUG=asyncpreemptoff=1 valgrind --tool=callgrind --callgrind-out-file="$work/cg.$i" \
				${cmds[$i]} >/dev/null 2>"$work/cg.$i.log" || true
			counts+=("$(grep -o 'Collected : [0-9]*' "$work/cg.$i.log" | grep -o '[0-9]*$')")
		done
		printf '%s\n' "${counts[@]}" | sort -n | awk -v name="${names[$i]}" '
			{ c[NR] = $1 } END { printf "%-28s %9d instructions (min %d, max %d)\n", name, c[3], c[1], c[5] }'
	done
	echo
	echo "tokctl get demo, instructions by Go package (self cost):"
	callgrind_annotate --threshold=100 "$work/cg.$last" 2>/dev/null | awk '
		/^ *[0-9,]+ +\(/ && /:/ {
			ir = $1; gsub(",", "", ir)
			fn = $0; sub(/^[^:]*:/, "", fn); sub(/ \[.*$/, "", fn)
			head = fn; sub(/[(\[].*$/, "", head)
			n = split(head, parts, "/"); last = parts[n]; sub(/\..*$/, "", last)
			pkg = (n > 1) ? substr(head, 1, length(head) - length(parts[n])) last : last
			if (fn ~ /^\?\?\?/) pkg = "(no symbol)"
			sum[pkg] += ir; total += ir
		}
		END { for (p in sum) if (sum[p] * 100 >= total) printf "  %-40s %9d  %5.1f%%\n", p, sum[p], 100 * sum[p] / total }' |
		sort -k2 -n -r
	echo "(packages under 1% left out)"
else
	echo "valgrind not installed (Debian package valgrind): skipped"
fi

echo
echo "== 2. pprof of tokd serving 64 clients (tokd in its own process; 5 s each)"
for mode in keepalive-raw newconn-raw; do
	"$bin/throughput" -modes "$mode" -clients 64 -duration 5s -floor 0 -cpuprofile "$work/$mode.pprof" | sed -n '3,4p'
	echo "-- $mode: top functions by cumulative CPU"
	go tool pprof -top -cum -nodecount=28 "$bin/throughput" "$work/$mode.pprof" 2>/dev/null | sed -n '4,34p'
	echo "-- $mode: top functions by own CPU"
	go tool pprof -top -nodecount=12 "$bin/throughput" "$work/$mode.pprof" 2>/dev/null | sed -n '6,18p'
	echo
done

echo "== 3. tokd's system calls per token (strace -c -f on tokd --dev, one client, 3 s)"
if command -v strace >/dev/null; then
	for mode in keepalive keepalive-raw newconn newconn-raw; do
		strace -c -f -q -p "$tokd_pid" -o "$work/strace.$mode" &
		strace_pid=$!
		sleep 0.5
		tokens=$("$bin/throughput" -socket "$sock" -modes "$mode" -clients 1 -duration 3s -warmup 1ms -floor 0 |
			awk '$1 == "'"$mode"'" && $2 == 1 { print $3 }')
		kill -INT "$strace_pid"
		wait "$strace_pid" 2>/dev/null || true
		echo "-- $mode: $tokens tokens (slowed by strace); calls per token:"
		awk -v n="$tokens" '$1 ~ /^[0-9.]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" {
				total += $4; if ($4 / n < 0.01) next
				printf "  %-16s %6.2f\n", $NF, $4 / n }
			END { printf "  %-16s %6.2f\n", "all", total / n }' "$work/strace.$mode"
	done
else
	echo "strace not installed (Debian package strace): skipped"
fi
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
