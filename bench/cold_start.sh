#!/usr/bin/env bash
# bench/cold_start.sh - cold-start figures of issue 6: the demo's synthetic
# stream (with its catalog of content embeddings) is produced to a standalone
# embedded broker and replayed through the arms full (meta-learned prior +
# content), zeroprior (û = 0, not learned), nocontent and popularity; then
# MovieLens ml-latest-small with its genres as content, when ../shared has it.
# The last column is the population prior's γ and τ at the end of each replay.
#
#   bench/cold_start.sh [--set key=value]...   (extra settings for both replays)
# Environment: DRIFTREC (build/driftrec), ML (../shared/data/ml-latest-small).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${DRIFTREC:-build/driftrec}
ml=${ML:-../shared/data/ml-latest-small}
out=$(mktemp -d /tmp/driftrec-cold-XXXXXX)
broker_pid=""
cleanup() { [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$out"; }
trap cleanup EXIT

table() {
  python3 - "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
k = d["k"]
na = lambda x: "   -  " if x is None else "%.4f" % x
print("| arm | hr@%d | first 1 | first 5 | first 10 | first 20 | items' first 10 | listed before 1st interaction | γ, τ at the end |" % k)
print("|---|---|---|---|---|---|---|---|---|")
for arm, v in d["arms"].items():
    c = v["cold_start"]
    u = [c["users_first_%d_events" % n]["hr@%d" % k] for n in (1, 5, 10, 20)]
    pp = v.get("population_prior")
    fade = "%.2f, %.1f" % (pp["gamma"], pp["tau"]) if pp and pp["gamma"] else "–"
    print("| %s | %s | %s | %s | %s | %s | %s | %d of %d | %s |" % (
        arm, na(v["hr@%d" % k]), *map(na, u), na(c["items_first_10_interactions"]["hr@%d" % k]),
        c["new_items_listed_before_first_interaction"], c["new_items"], fade))
PY
}

arms=full,zeroprior,nocontent,popularity
echo "## synthetic (driftrec demo stream, 400k events, 4,000 users, 2,000 items, 16-float embeddings)"
"$bin" broker --partitions 4 --topic driftrec.events --topic driftrec.items > "$out/broker.txt" 2>"$out/broker.log" &
broker_pid=$!
for _ in $(seq 50); do [ -s "$out/broker.txt" ] && break; sleep 0.1; done
bs=$(head -1 "$out/broker.txt")
"$bin" demo --quiet --produce-only --bootstrap "$bs" 2>"$out/demo.log"
"$bin" replay --bootstrap "$bs" --topic driftrec.events --catalog-topic driftrec.items --arms "$arms" \
       --report "$out/synthetic" "$@" 2>"$out/replay1.log"
table "$out/synthetic/report.json"
kill "$broker_pid"; wait "$broker_pid" 2>/dev/null || true; broker_pid=""

if [ -f "$ml/ratings.csv" ] && [ -f "$ml/movies.csv" ]; then
  echo; echo "## MovieLens ml-latest-small, genres as multi-hot content (the defaults)"
  "$bin" replay --embedded --input "$ml/ratings.csv" --catalog "$ml/movies.csv" --format movielens \
         --arms "$arms" --report "$out/ml" "$@" 2>"$out/replay2.log"
  table "$out/ml/report.json"
else
  echo; echo "(MovieLens skipped: $ml not found)"
fi
