#!/usr/bin/env bash
# bench/author_prior.sh - the population prior of a new post from its author
# (issue 17, learner.prior.popularity.authors): bench/author_prior_bench.c,
# built here against a build directory's libraries, run for each seed with
# the author prior off (table 0) and on (TABLE authors), then with a table too
# small for the authors (SMALL: eviction at work); prints each run and the
# median of the seeds per setting.
#
#   bench/author_prior.sh [BUILD_DIR]
# Environment: SEEDS ("1 2 3"), TABLE (1000000), SMALL (64),
#              EVENTS (300000), USERS (5000), AUTHORS (500), POSTS (20000), LIVE_POSTS (2000);
#              CONTENT_PRIOR (0/1: learner.prior.popularity.content, the library's default
#              when unset), QUALITY_IN_CONTENT (0: how much of a post's quality its embedding
#              carries), both read by the bench itself.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
SEEDS=${SEEDS:-"1 2 3"} TABLE=${TABLE:-1000000} SMALL=${SMALL:-64}
EVENTS=${EVENTS:-300000} USERS=${USERS:-5000} AUTHORS=${AUTHORS:-500} POSTS=${POSTS:-20000} LIVE_POSTS=${LIVE_POSTS:-2000}
tmp=$(mktemp -d /tmp/driftrec-author-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cc -std=c11 -O2 -g -D_GNU_SOURCE -I"$root/common" -I"$root/learner" "$root/bench/author_prior_bench.c" \
   -o "$tmp/author_prior_bench" "$build/libdr_learner.a" "$build/libdr_common.a" -lm
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "stream: $EVENTS events, $USERS users, $AUTHORS authors, $POSTS posts, $LIVE_POSTS live"
for table in 0 "$TABLE" "$SMALL"; do
  for seed in $SEEDS; do
    "$tmp/author_prior_bench" "$seed" "$table" "$EVENTS" "$USERS" "$AUTHORS" "$POSTS" "$LIVE_POSTS" | tee -a "$tmp/runs.txt"
  done
done
python3 - "$tmp/runs.txt" <<'PY'
import statistics, sys
runs = [dict(kv.split("=") for kv in line.split()) for line in open(sys.argv[1])]
keys = ["ctr", "ctr_young", "ctr_under10k", "ctr_users_first20"]
off = {r["seed"]: r for r in runs if r["authors_table"] == "0"}
print("medians over the seeds (in brackets: the median of each seed's change against the table off)")
print("| authors table | " + " | ".join(keys) + " |")
print("|---|" + "---|" * len(keys))
for table in dict.fromkeys(r["authors_table"] for r in runs):
    rs = [r for r in runs if r["authors_table"] == table]
    cells = []
    for k in keys:
        med = statistics.median(float(r[k]) for r in rs)
        change = statistics.median(float(r[k]) / float(off[r["seed"]][k]) - 1 for r in rs)
        cells.append("%.4f" % med + ("" if table == "0" else " (%+.1f%%)" % (100 * change)))
    print("| %s | %s |" % (table, " | ".join(cells)))
PY
