#!/usr/bin/env bash
# bench/run.sh - end-to-end throughput of the demo's open-loop scenario, and the raw
# consume rate of the same topic with kcat, on one standalone embedded
# broker (`driftrec broker`), so the two figures come from the same run.
#
#   bench/run.sh [RUNS]        (default 3; prints per-run figures and medians)
# Environment: EVENTS (2000000), USERS (100000), ITEMS (10000), DIM (32),
#              PARTITIONS (16), DRIFTREC (build/driftrec).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
EVENTS=${EVENTS:-2000000} USERS=${USERS:-100000} ITEMS=${ITEMS:-10000}
DIM=${DIM:-32} PARTITIONS=${PARTITIONS:-16}
bin=${DRIFTREC:-build/driftrec}
out=$(mktemp -d /tmp/driftrec-bench-XXXXXX)
broker_pid=""
cleanup() { [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$out"; }
trap cleanup EXIT

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "OpenBLAS core: ${OPENBLAS_CORETYPE:-auto-detected}  scenario: $EVENTS events, $USERS users, $ITEMS items, d=$DIM, $PARTITIONS partitions"
e2e=() raw=() mem=()
for run in $(seq 1 "$runs"); do
  # a fresh broker per run: the mock keeps ~5 MiB per partition in memory
  "$bin" broker --partitions "$PARTITIONS" --topic driftrec.events --topic driftrec.recommendations \
         --topic driftrec.events.dlq > "$out/broker.txt" 2>"$out/broker.log" &
  broker_pid=$!
  for _ in $(seq 50); do [ -s "$out/broker.txt" ] && break; sleep 0.1; done
  bs=$(head -1 "$out/broker.txt")
  # peak RSS of the demo process: it produces the stream, then runs the pipeline on it
  /usr/bin/time -f %M -o "$out/rss$run" \
  "$bin" demo --scenario openloop --quiet --no-drift-eval --bootstrap "$bs" --events "$EVENTS" --users "$USERS" --items "$ITEMS" \
         --partitions "$PARTITIONS" --set learner.dim="$DIM" --set topic.catalog= \
         --report "$out/r$run" 2>"$out/demo$run.log"
  eps=$(python3 -c "import json;print(round(json.load(open('$out/r$run/report.json'))['events_per_second']))")
  rss=$(( $(tail -1 "$out/rss$run") / 1024 ))
  # raw consume of the same topic: kcat reads to the end and exits
  t0=$(date +%s.%N)
  n=$(kcat -C -b "$bs" -t driftrec.events -o beginning -e -q -f '.' -X fetch.wait.max.ms=10 | wc -c)
  t1=$(date +%s.%N)
  kr=$(python3 -c "print(round($n/($t1-$t0)))")
  echo "run $run: end-to-end $eps events/s; kcat raw consume $kr msgs/s ($n msgs); ratio $(python3 -c "print(round($eps/$kr,3))"); peak RSS $rss MiB"
  e2e+=("$eps") raw+=("$kr") mem+=("$rss")
  kill "$broker_pid"; wait "$broker_pid" 2>/dev/null || true; broker_pid=""
done
python3 - "${e2e[*]}" "${raw[*]}" "${mem[*]}" <<'PY'
import statistics, sys
e, r, m = ([float(x) for x in a.split()] for a in sys.argv[1:4])
me, mr = statistics.median(e), statistics.median(r)
print(f"median end-to-end {me:.0f} events/s, median kcat {mr:.0f} msgs/s, ratio {me/mr:.3f}, "
      f"median peak RSS {statistics.median(m):.0f} MiB")
PY
