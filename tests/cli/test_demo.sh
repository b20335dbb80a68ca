#!/usr/bin/env bash
# `driftrec demo` on a small scenario: runs to the end, exits 0, and writes a
# report.json with the keys the issue names; `inspect item` on its state shows
# co-engagement neighbours from the item's own interest cluster.
set -euo pipefail
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$DRIFTREC" demo --quiet --events 30000 --users 1000 --items 500 --partitions 4 --report "$dir/r" \
  --state-dir "$dir/state" 2>"$dir/log" \
  || { cat "$dir/log"; exit 1; }
python3 - "$dir/r/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for k in ("events", "events_per_second", "lists_emitted", "hr@10"):
    assert k in r, k
assert r["events"] == 30000, r["events"]
assert r["lists_emitted"] > 0 and r["events_per_second"] > 0
assert 0 <= r["hr@10"] <= 1
print("report ok:", {k: r[k] for k in ("events", "events_per_second", "lists_emitted", "hr@10")})
PY
# item 1 is the most popular of cluster 0 (the synthetic stream's item i is in
# cluster (i - 1) % 20): users who engage with it mostly engage with cluster 0
"$DRIFTREC" inspect --state-dir "$dir/state" --json item 1 >"$dir/item.json"
python3 - "$dir/item.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d = d[0] if isinstance(d, list) else d
top = d["neighbors"][:10]
assert d["engagements"] > 0 and len(top) == 10, d
same = sum((n["item_id"] - 1) % 20 == 0 for n in top)
assert same >= 8, top
assert all(a["count"] >= b["count"] for a, b in zip(top, top[1:])), top
print("inspect item 1: %d of its 10 heaviest neighbours in its cluster" % same)
PY
echo "2 passed, 0 failed"
