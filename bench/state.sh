#!/usr/bin/env bash
# bench/state.sh - the state as the user population grows (issue 18,
# benchmark 4; bench/state_bench.c built here against a build directory's
# libraries): events/s, bytes per user on disk and in the cache, restart.
#
#   bench/state.sh [BUILD_DIR]
# Environment: USERS ("10000 100000 1000000"), EVENTS_PER_USER (5),
#              CACHE (200000), DIR (a temporary folder; its disk is measured),
#              KEEP_STATE (a path: the last population's store is moved there
#              and kept, for bench/restart.sh's STATE; users in partition 0),
#              STATE_COMPRESSION, STATE_COMPRESSION_BOTTOMMOST, STATE_WRITE_BUFFER_MB
#              (the store's settings: state.compression and the rest).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
USERS=${USERS:-"10000 100000 1000000"} EVENTS_PER_USER=${EVENTS_PER_USER:-5} CACHE=${CACHE:-200000}
tmp=$(mktemp -d "${DIR:-/tmp}/driftrec-state-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cc -std=c11 -O2 -g -D_GNU_SOURCE -I"$root/common" -I"$root/learner" -I"$root/state" "$root/bench/state_bench.c" \
   -o "$tmp/state_bench" "$build/libdr_state.a" "$build/libdr_learner.a" "$build/libdr_common.a" \
   $(pkg-config --libs rocksdb) -lm
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); cache $CACHE users"
for n in $USERS; do
  rm -rf "$tmp/db"
  line=$("$tmp/state_bench" "$tmp/db" "$n" $((n * EVENTS_PER_USER)) "$CACHE")
  echo "$line disk_bytes_per_user=$(( $(du -sb "$tmp/db" | cut -f1) / n ))"
done
if [ -n "${KEEP_STATE:-}" ]; then rm -rf "$KEEP_STATE"; mv "$tmp/db" "$KEEP_STATE"; echo "store kept: $KEEP_STATE"; fi
