#!/usr/bin/env bash
# bench/scale.sh - memory and list scoring against the catalog size
# (bench/scale_bench.c, built here against a build directory's libraries):
# heap bytes per item and per user, then dr_emit_topk's lists per CPU
# second (steadier than the wall clock on a shared machine; both are
# printed), scratch bytes and peak RSS at each catalog size, medians of RUNS.
# The same script in a worktree of an older commit measures the code before.
#
#   bench/scale.sh [BUILD_DIR]     (default build; RelWithDebInfo or Release)
# Environment: ITEMS ("10000 1000000"), RUNS (3), BATCH (512, emit.batch),
#   MEMORY (1: run the memory part), EMIT (1: also the emitter itself,
#   full scan against the retrieval path: `scale_bench emit`; EMIT_THREADS: the full
#   scan on that many threads, emit.threads), BUILD (1: also the
#   wall time until the emitter's index serves, built on its own thread, with an
#   emit every 100 ms: `scale_bench build N 8 20 1`), CHUNK (unset: the library's
#   DR_EMIT_CHUNK_ITEMS; a number: topk.c compiled with that chunk instead).
#   `scale_bench emit` also reads VECTORS (random: the model's initial rows;
#   clustered: shaped like trained vectors, bench/bench_world.h), SOURCES (10:
#   each scored user's engaged items), CANDIDATES, EF, M, POPULAR
#   (emit.retrieval.*), BUILD_THREADS, SYNC_MS, REFRESH_PASS_MS.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
ITEMS=${ITEMS:-"10000 1000000"} RUNS=${RUNS:-3} BATCH=${BATCH:-512} MEMORY=${MEMORY:-1}
tmp=$(mktemp -d /tmp/driftrec-scale-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

inc=(-I"$root/common" -I"$root/learner" -I"$root/emitter" -I"$root/schemas")
srcs=("$root/bench/scale_bench.c")
if [ -n "${CHUNK:-}" ]; then
  # topk.c and its header copied side by side: topk.c's "dr_emit.h" is the patched one
  sed "s/^#define DR_EMIT_CHUNK_ITEMS .*/#define DR_EMIT_CHUNK_ITEMS $CHUNK/" "$root/emitter/dr_emit.h" > "$tmp/dr_emit.h"
  cp "$root/emitter/topk.c" "$tmp/topk.c"
  inc=(-I"$tmp" "${inc[@]}")
  srcs+=("$tmp/topk.c")
fi
cc -std=c11 -O2 -g -D_GNU_SOURCE "${inc[@]}" "${srcs[@]}" -o "$tmp/scale_bench" \
   "$build/libdr_emitter.a" "$build/libdr_learner.a" "$build/libdr_retrieval.a" "$build/libdr_schemas.a" \
   "$build/libdr_common.a" -lrdkafka -lavro -lopenblas -lstdc++ -lpthread -lm

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); build: $build${CHUNK:+; chunk $CHUNK}"
[ "$MEMORY" = 1 ] && "$tmp/scale_bench" memory 1000000
for n in $ITEMS; do
  # a few seconds of scoring per run (~1 s a call at 1M items, one core)
  reps=$(( 600000000 / (n * BATCH) )); [ "$reps" -lt 2 ] && reps=2
  rates=()
  for run in $(seq 1 "$RUNS"); do
    line=$("$tmp/scale_bench" topk "$n" "$reps" "$BATCH")
    echo "run $run: $line"
    rates+=("$(sed 's/.*lists_per_cpu_s=\([0-9]*\).*/\1/' <<<"$line")")
  done
  python3 -c "import statistics,sys; print(f'items=$n median lists per CPU second {statistics.median(map(float,sys.argv[1:])):.0f}')" "${rates[@]}"
  if [ "${EMIT:-0}" = 1 ]; then
    "$tmp/scale_bench" emit "$n" 3
  fi
  if [ "${BUILD:-0}" = 1 ]; then
    "$tmp/scale_bench" build "$n" 8 20 1
  fi
done
