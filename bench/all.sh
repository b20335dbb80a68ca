#!/usr/bin/env bash
# bench/all.sh - the benchmark suite `make bench` runs (issue 18): each prints
# its figures beside the ceiling it is compared with, measured in the same
# run. Record results in docs/BENCHMARKS.md with the machine and the command.
#   1. end to end vs a raw consume of the same topic  (bench/run.sh)
#   2. freshness, timed from outside                    (bench/freshness.sh)
#   3. scoring vs a bare cblas_sgemm of the same shape  (bench/scale.sh)
#   4. the state as users grow; restart                 (bench/state.sh, bench/restart.sh)
#   5. ns per ADWIN update                              (bench/adwin.sh)
#   6. the MovieLens replay, end to end                 (driftrec replay --embedded)
#   7. approximate retrieval vs the full scan            (bench/retrieval.sh, bench/scale.sh EMIT=1)
#   8. catalog churn: posts that expire, memory and disk (bench/churn.sh)
#   9. a withdrawal's scan of the stored users vs the loop (bench/withdraw.sh)
#  10. the demo with its drift evaluation vs without, `make demo`'s closed-loop
#      feed and the open-loop scenario (bench/demo_eval.sh; issue 18's benchmark 7)
#  11. what splitting the users over instances costs in model hr@10, without
#      the timing (bench/split.sh; issue 14)
# Environment: BUILD (build), ML (../shared/data/ml-latest-small).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build}
ml=${ML:-$root/../shared/data/ml-latest-small}
echo "OPENBLAS_CORETYPE: ${OPENBLAS_CORETYPE:-unset (auto-detected)}"
echo; echo "== 1. end to end vs raw consume (target: at least 0.3)"; DRIFTREC="$build/driftrec" "$root/bench/run.sh" 3
echo; echo "== 2. freshness (target: p99 at most emit.interval.ms + 50 ms)"; "$root/bench/freshness.sh" "$build"
echo; echo "== 3. scoring (target: share of bare sgemm at least 0.6)"; ITEMS="10000 100000 1000000" RUNS=3 MEMORY=0 "$root/bench/scale.sh" "$build"
echo; echo "== 4. state (targets: at most 2 KB per user on disk, restart under 1 s)"; "$root/bench/state.sh" "$build"
echo "-- restart of the whole pipeline to its first list: the consumer group, and ingest.partitions=all"
DRIFTREC="$build/driftrec" "$root/bench/restart.sh" 3
echo; echo "== 5. ADWIN (target: at most 100 ns per update)"; "$root/bench/adwin.sh" "$build"
echo; echo "== 6. MovieLens replay, default arms (target: at most 2 s)"
if [ -f "$ml/ratings.csv" ]; then
  out=$(mktemp -d /tmp/driftrec-replay-XXXXXX)
  t0=$(date +%s.%N)
  "$build/driftrec" replay --embedded --input "$ml/ratings.csv" --format movielens --report "$out" 2>/dev/null
  t1=$(date +%s.%N)
  echo "replay of $(wc -l < "$ml/ratings.csv") lines: $(python3 -c "print(round($t1 - $t0, 2))") s"
  rm -rf "$out"
else
  echo "(skipped: $ml not found)"
fi
echo; echo "== 7. approximate retrieval vs the full scan (target at 1M items: 10x the scan's lists/s, recall@50 at least 0.95)"
# ~4 minutes: the 1M-item build is ~3 of them; RETRIEVAL_ITEMS to change the sizes
ITEMS=${RETRIEVAL_ITEMS:-"10000 100000 1000000"} KINDS=clustered RUNS=3 EF=50,64 "$root/bench/retrieval.sh" "$build"
echo "-- the emitter's whole retrieval path (every term, exact scores) vs its full scan; EMIT_ITEMS (100000; 1000000 adds ~5 min a world)"
# three worlds: the model's random rows with users of 10 engaged items, and
# trained-like vectors with users of none (factors and popularity rank the
# lists) and of 10 (the co-engagement term weighs most): docs/RETRIEVAL.md
for world in "random 10" "clustered 0" "clustered 10"; do
  set -- $world
  echo "-- vectors $1, engaged items per scored user $2"
  VECTORS=$1 SOURCES=$2 ITEMS=${EMIT_ITEMS:-100000} RUNS=1 MEMORY=0 EMIT=1 "$root/bench/scale.sh" "$build"
done
echo; echo "== 8. catalog churn (target: live items, rows and stored items flat while posts arrive and expire)"
# ~10 minutes: 5M posts over 15M events; CHURN_EVENTS / CHURN_POSTS to shorten
EVENTS=${CHURN_EVENTS:-15000000} POSTS=${CHURN_POSTS:-5000000} "$root/bench/churn.sh" "$build"
echo; echo "== 9. a withdrawal's scan of 1M stored users (target: the loop's longest gap a few ms, not the scan's length)"
USERS=${WITHDRAW_USERS:-1000000} ROUNDS=3 "$root/bench/withdraw.sh" "$build"
echo; echo "== 10. the demo's own throughput with its drift evaluation vs without (target: at least 0.9)"
SCENARIO=feed DRIFTREC="$build/driftrec" "$root/bench/demo_eval.sh" 3
SCENARIO=openloop DRIFTREC="$build/driftrec" "$root/bench/demo_eval.sh" 5
echo; echo "== 11. model hr@10 of K instances sharing their changes vs one, without the timing (issue 14's target: within 2% at the default interval)"
"$root/bench/split.sh" "$build"
