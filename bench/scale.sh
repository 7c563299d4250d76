#!/usr/bin/env bash
# bench/scale.sh: tokd with 1,000 profiles of 60 s tokens refreshing
# against the emulator: CPU per refresh, RSS, and start-to-READY with 1,000
# sealed tokens in the store. Two runs, about 80 s each: the jwt-bearer
# grant (an RS256 assertion signed per refresh), then the same profiles
# with refresh tokens (refresh_token = true).
#
#   bench/scale.sh                          # both runs
#   bench/scale.sh -window 120s -restarts 9 # arguments go to both runs of bench/scale
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/tokd-scale.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "building (go build -trimpath, CGO_ENABLED=0) ..." >&2
CGO_ENABLED=0 timeout 300 go build -trimpath -o "$work/" ./cmd/tokd ./bench/scale
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs"
timeout 150 "$work/scale" -tokd "$work/tokd" "$@"
echo
timeout 150 "$work/scale" -tokd "$work/tokd" -refresh-token "$@"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
