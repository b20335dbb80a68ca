#!/usr/bin/env bash
# bench/ab_pipeline.sh - the live pipeline's throughput under two sets of
# settings, or of two binaries, interleaved (A, B, A, B, ...) so that the
# machine's drift hits both alike: the demo's open-loop scenario, as
# bench/run.sh runs it, on a fresh standalone embedded broker per run.
#
#   bench/ab_pipeline.sh "A --set options" "B --set options" [RUNS]   (default 3)
# Environment: EVENTS (1000000), DRIFTREC (build/driftrec), DRIFTREC_A and
#              DRIFTREC_B (the binaries of A and B; default DRIFTREC).
set -euo pipefail
cd "$(dirname "$0")/.."
a=${1?settings A (may be "")}; b=${2?settings B (may be "")}; runs=${3:-3}
bin=${DRIFTREC:-build/driftrec}
declare -A bin_of=([A]="${DRIFTREC_A:-$bin}" [B]="${DRIFTREC_B:-$bin}")
out=$(mktemp -d /tmp/driftrec-ab-XXXXXX)
broker_pid=""
cleanup() { [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$out"; }
trap cleanup EXIT
declare -A eps=([A]="" [B]="")
for run in $(seq 1 "$runs"); do
  for arm in A B; do
    settings=$a; [ "$arm" = B ] && settings=$b
    "${bin_of[$arm]}" broker --partitions 16 --topic driftrec.events --topic driftrec.recommendations \
           --topic driftrec.events.dlq > "$out/broker.txt" 2>"$out/broker.log" &
    broker_pid=$!
    for _ in $(seq 50); do [ -s "$out/broker.txt" ] && break; sleep 0.1; done
    # shellcheck disable=SC2086 # the settings are words on purpose
    "${bin_of[$arm]}" demo --scenario openloop --quiet --no-drift-eval --bootstrap "$(head -1 "$out/broker.txt")" \
           --events "${EVENTS:-1000000}" --users 100000 --items 10000 --partitions 16 --set topic.catalog= \
           $settings --report "$out/r" 2>"$out/demo.log"
    e=$(python3 -c "import json;print(round(json.load(open('$out/r/report.json'))['events_per_second']))")
    echo "run $run $arm: $e events/s"
    eps[$arm]+="$e "
    kill "$broker_pid"; wait "$broker_pid" 2>/dev/null || true; broker_pid=""
  done
done
python3 - "${eps[A]}" "${eps[B]}" <<'PY'
import statistics, sys
a, b = (statistics.median(float(x) for x in s.split()) for s in sys.argv[1:3])
print(f"median A {a:.0f} events/s, B {b:.0f} events/s, B/A {b / a:.3f}")
PY
