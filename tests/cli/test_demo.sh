#!/usr/bin/env bash
# `driftrec demo` on a small scenario: runs to the end, exits 0, and writes a
# report.json with the keys the issue names.
set -euo pipefail
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$DRIFTREC" demo --quiet --events 30000 --users 1000 --items 500 --partitions 4 --report "$dir/r" 2>"$dir/log" \
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
echo "1 passed, 0 failed"
