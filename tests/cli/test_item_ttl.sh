#!/usr/bin/env bash
# Items that leave (issue 17), through Kafka and the store:
#  1. a run over the demo's two-day stream with learner.item.ttl.ms of 6 h:
#     items expire and are removed (the progress line counts them, the store
#     holds fewer items), and the catalog's tombstone of the most popular
#     item takes it out of every user's last list and out of the store;
#  2. restarts under other settings on the same state: the TTL off, then
#     back on and shorter; each loads every stored item, and at the end every
#     user's applied-event counter equals that of one run without any TTL
#     (expiry changes what is listed, never which events count).
set -euo pipefail
EVENTS=${EVENTS:-12000} USERS=${USERS:-150} ITEMS=${ITEMS:-300}
. "$(dirname "$0")/lib.sh"
start_broker 2 ev ev recs items

common=(--set topic.events=ev --set topic.recommendations=recs --set topic.catalog=items
        --set kafka.fetch.wait.max.ms=10 --set state.commit.interval.ms=200 --set metrics.listen=
        --set run.exit.idle.ms=1500 --set log.level=info)

more() {
  "$DRIFTREC" demo --bootstrap "$bs" --produce-only --events "$EVENTS" --users "$USERS" --items "$ITEMS" \
      --seed "$1" --set topic.events=ev --set topic.catalog=items --quiet 2>"$dir/produce.log" ||
    { cat "$dir/produce.log"; exit 1; }
}

run_to_end() {
  local name=$1 state=$2 rc=0
  shift 2
  timeout 120 "$DRIFTREC" run "${common[@]}" --set "kafka.bootstrap.servers=$bs" --set "state.dir=$state" \
      --set "group.id=$name" "$@" >"$dir/$name.log" 2>&1 || rc=$?
  [ "$rc" -eq 0 ] || { echo "run $name: exit $rc"; grep -E "ERROR|error" "$dir/$name.log" | head -8; tail -5 "$dir/$name.log"; exit 1; }
  if grep -q "corrupt" "$dir/$name.log"; then echo "run $name: corrupt records"; grep corrupt "$dir/$name.log" | head -3; exit 1; fi
}
# field LOG KEY: the value of KEY= in the run's last progress line.
field() { grep "msg=\"stopped\" consumed=" "$1" | tail -1 | sed -n "s/.* $2=\([0-9]*\).*/\1/p"; }
stored_items() { "$DRIFTREC" inspect --state-dir "$1" items | wc -l; }

more 1
# the catalog removes item 1 (the most popular of its cluster): a
# tombstone, the key with no value; and one of an item nobody met
printf '1:\n999999:\n' | kcat -P -b "$bs" -t items -K: -Z
run_to_end ttl6h "$dir/state" --set learner.item.ttl.ms=21600000 --set learner.item.grace.ms=3600000
expired=$(field "$dir/ttl6h.log" items_expired) removed=$(field "$dir/ttl6h.log" items_removed)
[ "${expired:-0}" -gt 0 ] && [ "${removed:-0}" -gt 0 ] ||
  { echo "a 6 h TTL over two days of events: $expired expired, $removed removed"; exit 1; }
[ "$(field "$dir/ttl6h.log" dlq)" -eq 0 ] || { echo "records dead-lettered (the tombstones?)"; exit 1; }
n_items=$(stored_items "$dir/state")
"$DRIFTREC" lists --last --items --set kafka.bootstrap.servers="$bs" --set topic.recommendations=recs >"$dir/lists.txt"
[ "$(wc -l <"$dir/lists.txt")" -ge $((USERS / 2)) ] || { echo "only $(wc -l <"$dir/lists.txt") lists"; exit 1; }
if grep -Eq '(=|,)1(,|$)' "$dir/lists.txt"; then echo "a last list holds the removed item 1"; grep -E '(=|,)1(,|$)' "$dir/lists.txt" | head -3; exit 1; fi
one=$("$DRIFTREC" inspect --state-dir "$dir/state" --json item 1 | tr -d ' \n' || true)
case "$one" in
  ''|*'"tombstoned":true'*) ;; # gone, or back (a late event) but never listed
  *) echo "item 1 after its tombstone: $one"; exit 1 ;;
esac

more 2
run_to_end ttl_off "$dir/state"
[ "$(field "$dir/ttl_off.log" items_removed)" -eq 0 ] || { echo "items removed with the TTL off"; exit 1; }
more 3
run_to_end ttl1h "$dir/state" --set learner.item.ttl.ms=3600000 --set learner.item.grace.ms=0
[ "$(field "$dir/ttl1h.log" items_removed)" -gt 0 ] || { echo "nothing removed under a 1 h TTL"; exit 1; }

run_to_end reference "$dir/ref"
counters "$dir/ref" >"$dir/ref.txt"
counters "$dir/state" >"$dir/state.txt"
total=$(awk '{s += $2} END {print s + 0}' "$dir/ref.txt")
[ "$total" -eq $((3 * EVENTS)) ] || { echo "reference applied $total of $((3 * EVENTS)) events"; exit 1; }
diff -q "$dir/ref.txt" "$dir/state.txt" >/dev/null ||
  { echo "counters differ from the run without a TTL"; diff "$dir/ref.txt" "$dir/state.txt" | head; exit 1; }
echo "6 h TTL: $expired items expired, $removed removed, $n_items of $ITEMS stored at the end," \
     "item 1 in none of $(wc -l <"$dir/lists.txt") last lists after its tombstone;" \
     "restarts with the TTL off and at 1 h: $total events applied exactly once"
echo "1 passed, 0 failed"
