#!/usr/bin/env bash
# bench/churn.sh - a feed's catalog churn (issue 17; bench/churn_bench.c built
# here against a build directory's libraries): posts arrive and expire under
# learner.item.ttl.ms while users engage them; prints, at 20 checkpoints,
# the live items, the rows of the item matrix, the items stored, the store's
# live bytes and the current RSS, which must stay flat once posts expire.
#
#   bench/churn.sh [BUILD_DIR]
# Environment: USERS (300000), EVENTS (15000000), POSTS (5000000),
#              LIVE_POSTS (100000: the TTL is the time they take to arrive),
#              CACHE (200000), BLOCK_CACHE_MB (RocksDB's, 256), DIR (a temporary folder).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
USERS=${USERS:-300000} EVENTS=${EVENTS:-15000000} POSTS=${POSTS:-5000000}
LIVE_POSTS=${LIVE_POSTS:-100000} CACHE=${CACHE:-200000} BLOCK_CACHE_MB=${BLOCK_CACHE_MB:-256}
tmp=$(mktemp -d "${DIR:-/tmp}/driftrec-churn-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cc -std=c11 -O2 -g -D_GNU_SOURCE -I"$root/common" -I"$root/learner" -I"$root/state" "$root/bench/churn_bench.c" \
   -o "$tmp/churn_bench" "$build/libdr_state.a" "$build/libdr_learner.a" "$build/libdr_common.a" \
   $(pkg-config --libs rocksdb) -lm
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
"$tmp/churn_bench" "$tmp/db" "$USERS" "$EVENTS" "$POSTS" "$LIVE_POSTS" "$CACHE" "$BLOCK_CACHE_MB"
echo "disk: $(du -sm "$tmp/db" | cut -f1) MiB at the end"
