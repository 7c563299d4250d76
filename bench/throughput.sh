#!/usr/bin/env bash
# bench/throughput.sh: tokd's socket API under 1, 8 and 64 concurrent
# clients, 5 s each after 1 s of warm-up, in four modes: keep-alive with
# net/http's client (keepalive) and with a lean epoll load generator
# (keepalive-raw), one connection per request with tokd's client package,
# tokctl's code (newconn), and with the lean generator (newconn-raw):
# tokens/s, p50/p99, and the CPU per token of tokd and of the clients;
# then the kernel's floor per exchange. About a minute and a half.
#
#   bench/throughput.sh                       # the table
#   bench/throughput.sh -cpuprofile tokd.pprof -modes newconn -clients 64
#
# Arguments are passed to bench/throughput (see its doc comment).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/tokd-tp.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "building (go build -trimpath, CGO_ENABLED=0) ..." >&2
CGO_ENABLED=0 timeout 300 go build -trimpath -o "$work/throughput" ./bench/throughput
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs"
timeout 400 "$work/throughput" "$@"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
