#!/usr/bin/env bash
# bench/adwin.sh - ns per ADWIN update (bench/adwin_bench.c, built here
# against a build directory's libraries; issue 18 benchmark 5, target 100 ns).
#
#   bench/adwin.sh [BUILD_DIR] [N]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
tmp=$(mktemp -d /tmp/driftrec-adwin-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cc -std=c11 -O2 -g -D_GNU_SOURCE -I"$root/common" -I"$root/learner" "$root/bench/adwin_bench.c" \
   -o "$tmp/adwin_bench" "$build/libdr_learner.a" "$build/libdr_common.a" -lm
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
"$tmp/adwin_bench" "${2:-10000000}"
