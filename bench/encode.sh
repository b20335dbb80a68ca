#!/usr/bin/env bash
# bench/encode.sh - a changed user's record into the commit's batch, per
# user: a buffer of its own then copied, against encoded in place
# (bench/encode_bench.c, built here against a build directory's libraries).
#
#   bench/encode.sh [BUILD_DIR] [RUNS]      (RUNS default 3)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
runs=${2:-3}
tmp=$(mktemp -d /tmp/driftrec-encode-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cc -std=c11 -O2 -g -D_GNU_SOURCE -I"$root/common" -I"$root/learner" -I"$root/state" "$root/bench/encode_bench.c" \
   -o "$tmp/encode_bench" "$build/libdr_state.a" "$build/libdr_learner.a" "$build/libdr_common.a" \
   $(pkg-config --libs rocksdb) -lopenblas -lm
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for _ in $(seq "$runs"); do "$tmp/encode_bench"; done
