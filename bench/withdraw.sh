#!/usr/bin/env bash
# bench/withdraw.sh - what a withdrawal (a blocked or deleted item) costs the
# loop thread at scale (bench/withdraw_bench.c, built here against a build
# directory's libraries): the scan of every stored user run on the loop
# thread, as before, and on libuv's thread pool, as the pipeline does now,
# alternated; the loop's longest gap between 1 ms ticks is how long events
# and lists wait.
#
#   bench/withdraw.sh [BUILD_DIR]
# Environment: USERS (1000000), ROUNDS (3), ITEMS (1: withdrawn at once), DIR (a temporary folder).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
USERS=${USERS:-1000000} ROUNDS=${ROUNDS:-3} ITEMS=${ITEMS:-1}
tmp=$(mktemp -d "${DIR:-/tmp}/driftrec-withdraw-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cc -std=c11 -O2 -g -D_GNU_SOURCE -I"$root/common" -I"$root/learner" -I"$root/state" -I"$root/ingest" -I"$root/schemas" -I"$root/src" \
   "$root/bench/withdraw_bench.c" -o "$tmp/withdraw_bench" "$build/libdr_app.a" "$build/libdr_state.a" \
   "$build/libdr_learner.a" "$build/libdr_common.a" $(pkg-config --libs rocksdb libuv) -lpthread -lm
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
"$tmp/withdraw_bench" "$tmp/db" "$USERS" "$ROUNDS" "$ITEMS"
