#!/usr/bin/env bash
# bench/content_refresh.sh - what bringing content items' q_i up to W in
# turns saves: the demo's open-loop scenario (embedded broker, catalog with
# content embeddings) with the default learner.content.refresh.rows against
# 0 (the whole catalog at every outer step), run in turn; events/s and
# hr@10 over clicks per run, and the pairwise ratios.
#
#   bench/content_refresh.sh [PAIRS]   (default 3)
# Environment: ITEMS (100000), EVENTS (1000000), USERS (100000),
#              DRIFTREC (build/driftrec).
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-3}
bin=${DRIFTREC:-build/driftrec}
out=$(mktemp -d /tmp/driftrec-refresh-XXXXXX)
trap 'rm -rf "$out"' EXIT
for pair in $(seq 1 "$pairs"); do
  for arm in turns whole; do
    set_arg=(); [ "$arm" = whole ] && set_arg=(--set learner.content.refresh.rows=0)
    "$bin" demo --scenario openloop --quiet --no-drift-eval --events "${EVENTS:-1000000}" \
           --users "${USERS:-100000}" --items "${ITEMS:-100000}" "${set_arg[@]}" --report "$out/$arm" \
           > "$out/demo.log" 2>&1
    python3 -c "import json;r=json.load(open('$out/$arm/report.json'));print('pair $pair $arm:', round(r['events_per_second']), 'events/s, hr@10', round(r['hr@10'], 4))" \
      | tee -a "$out/runs"
  done
done
python3 - "$out/runs" <<'PY'
import statistics, sys
runs = [l.split() for l in open(sys.argv[1])]
by = {"turns:": [], "whole:": []}
for r in runs: by[r[2]].append(float(r[3]))
ratios = [t / w for t, w in zip(by["turns:"], by["whole:"])]
print("in turns / whole catalog each step, per pair:", " ".join(f"{x:.3f}" for x in ratios),
      f"median {statistics.median(ratios):.3f}")
PY
