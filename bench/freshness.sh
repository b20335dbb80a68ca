#!/usr/bin/env bash
# bench/freshness.sh - freshness of the lists, timed from outside the
# pipeline (issue 18, benchmark 2): `driftrec run` with the shipped defaults
# on a standalone embedded broker, and bench/freshness_probe.c producing
# events at steady rates and reading the lists back; each list's delay is its
# arrival minus the produce time of the newest event it reflects.
#
#   bench/freshness.sh [BUILD_DIR] [--set key=value]...
# Environment: RATES ("1000 50000"), DURATION (20 s per rate), USERS (100000),
#              PARTITIONS (4), DRIFTREC (BUILD_DIR/driftrec).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
[ $# -gt 0 ] && shift
# (not SECONDS: bash sets that itself, to the seconds the shell has run,
# so the runs lasted however long the script had been going)
RATES=${RATES:-"1000 50000"} SECONDS_EACH=${DURATION:-20} USERS=${USERS:-100000} PARTITIONS=${PARTITIONS:-4}
bin=${DRIFTREC:-$build/driftrec}
tmp=$(mktemp -d /tmp/driftrec-fresh-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

cc -std=c11 -O2 -g -D_GNU_SOURCE -I"$root/common" -I"$root/schemas" "$root/bench/freshness_probe.c" \
   -o "$tmp/probe" "$build/libdr_schemas.a" "$build/libdr_common.a" -lrdkafka -lavro -lpthread -lm

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); settings: defaults${*:+ $*}"
for rate in $RATES; do
  # a fresh broker and state per rate
  "$bin" broker --partitions "$PARTITIONS" --topic ev --topic ev.recommendations --topic ev.dlq \
      >"$tmp/broker.txt" 2>"$tmp/broker.log" &
  pids+=($!)
  for _ in $(seq 100); do [ -s "$tmp/broker.txt" ] && break; sleep 0.05; done
  bs=$(head -1 "$tmp/broker.txt")
  rm -rf "$tmp/state"
  "$bin" run --set "kafka.bootstrap.servers=$bs" --set topic.events=ev --set topic.recommendations=ev.recommendations \
      --set state.dir="$tmp/state" --set metrics.listen= "$@" >"$tmp/run.log" 2>&1 &
  run_pid=$!
  pids+=($run_pid)
  for _ in $(seq 300); do grep -q "partitions assigned" "$tmp/run.log" && break; sleep 0.05; done
  grep -q "partitions assigned" "$tmp/run.log" || { echo "driftrec run got no partitions"; cat "$tmp/run.log"; exit 1; }
  "$tmp/probe" "$bs" ev ev.recommendations "$rate" "$SECONDS_EACH" "$USERS"
  kill "$run_pid"; wait "$run_pid" 2>/dev/null || true
  # the loop thread's longest stall building a commit (lists wait behind it)
  echo "  driftrec run: $(sed -n 's/.*msg="stopped" .*\(commits=[0-9]*\( commit_steps=[0-9]*\)\? commit_build_ms=[0-9]* commit_build_max_ms=[0-9.]*\).*/\1/p' "$tmp/run.log")"
  kill "${pids[0]}" 2>/dev/null || true; wait 2>/dev/null || true
  pids=()
done
