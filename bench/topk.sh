#!/usr/bin/env bash
# bench/topk.sh - ns of top-K selection per list and per item in
# dr_emit_topk (bench/topk_bench.c: dr_emit_topk's CPU time less the bare
# sgemm's of the same shapes, K = 50, d = 32), built here against a build
# directory's libraries (issue 18, "top-K selection must not dominate").
#
#   bench/topk.sh [BUILD_DIR]
#   bench/topk.sh BUILD_DIR BASELINE_TOPK_C
# The second form also builds the bench with BASELINE_TOPK_C (e.g. an older
# emitter/topk.c, copied out of the tree) in place of the library's, -O3 as
# the library is built, and runs the two RUNS times alternately: per
# catalog size the median of each, new/baseline, and whether the lists
# agree (their hashes must be equal).
# Environment: ITEMS ("5000 100000 1000000"), RUNS (3), ROUNDS (3, timed
#   rounds inside each run), BATCH (512, emit.batch).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
ITEMS=${ITEMS:-"5000 100000 1000000"} RUNS=${RUNS:-3} ROUNDS=${ROUNDS:-3} BATCH=${BATCH:-512}
tmp=$(mktemp -d /tmp/driftrec-topk-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
flags=(-std=c11 -O2 -g -D_GNU_SOURCE -I"$root/common" -I"$root/learner" -I"$root/emitter" -I"$root/schemas")
libs=("$build/libdr_emitter.a" "$build/libdr_learner.a" "$build/libdr_retrieval.a" "$build/libdr_schemas.a"
      "$build/libdr_common.a" -lrdkafka -lavro -lopenblas -lstdc++ -lpthread -lm)
cc "${flags[@]}" "$root/bench/topk_bench.c" -o "$tmp/new" "${libs[@]}"
bins=(new)
if [ $# -ge 2 ]; then
  cc "${flags[@]}" -O3 -DNDEBUG -c "$2" -o "$tmp/baseline_topk.o"
  cc "${flags[@]}" "$root/bench/topk_bench.c" "$tmp/baseline_topk.o" -o "$tmp/baseline" "${libs[@]}"
  bins=(baseline new)
fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); build: $build"
for n in $ITEMS; do
  reps=$(( 250000000 / (n * BATCH) )); [ "$reps" -lt 1 ] && reps=1
  : > "$tmp/runs"
  for ((r = 0; r < RUNS; r++)); do
    order=("${bins[@]}"); ((r % 2 == 1 && ${#bins[@]} == 2)) && order=(new baseline)
    for b in "${order[@]}"; do
      line=$("$tmp/$b" "$n" "$reps" "$BATCH" "$ROUNDS" | tail -1)
      echo "$b: $line"
      echo "$b $line" >> "$tmp/runs"
    done
  done
  python3 - "$tmp/runs" "$n" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    b = line.split()[0]
    f = dict(re.findall(r'(\w+)=([0-9a-f.]+)', line))
    runs.setdefault(b, []).append(f)
med = {b: {k: statistics.median(float(f[k]) for f in fs) for k in ("selection_ns_per_list", "selection_ns_per_item", "share")}
       for b, fs in runs.items()}
for b, m in med.items():
    print(f"items={sys.argv[2]} {b}: median selection {m['selection_ns_per_list']:.0f} ns per list, "
          f"{m['selection_ns_per_item']:.3f} ns per item, share of bare sgemm {m['share']:.2f}")
if len(med) == 2:
    same = {f['lists_hash'] for fs in runs.values() for f in fs}
    print(f"items={sys.argv[2]} new/baseline selection {med['new']['selection_ns_per_list'] / med['baseline']['selection_ns_per_list']:.2f}, "
          f"lists {'identical' if len(same) == 1 else 'DIFFER'}")
PY
done
