#!/usr/bin/env bash
# Topics: `driftrec broker --config FILE` creates the configuration's topics
# with the mock API; `driftrec topics create` (Admin API, for real clusters)
# fails cleanly against the mock, which does not serve CreateTopics.
set -euo pipefail
dir=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
printf 'topic.events = a.events\ntopic.recommendations = a.recs\ntopic.catalog = a.items\n' >"$dir/c.conf"
"$DRIFTREC" broker --partitions 3 --config "$dir/c.conf" >"$dir/addr" 2>/dev/null &
pid=$!
for _ in $(seq 200); do [ -s "$dir/addr" ] && break; sleep 0.05; done
bs=$(head -1 "$dir/addr")
md=$(kcat -b "$bs" -L)
for t in a.events a.recs a.events.dlq a.items; do
  grep -q "topic \"$t\" with 3 partitions" <<<"$md" || { echo "no topic $t"; echo "$md"; exit 1; }
done
rc=0
out=$("$DRIFTREC" topics create --config "$dir/c.conf" --set "kafka.bootstrap.servers=$bs" --replication 1 \
      --timeout-ms 2000 2>&1) || rc=$?
[ "$rc" -eq 1 ] || { echo "topics create against the mock: exit $rc"; echo "$out"; exit 1; }
grep -q "driftrec broker --config" <<<"$out"
echo "1 passed, 0 failed"
