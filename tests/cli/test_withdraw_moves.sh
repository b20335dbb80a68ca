#!/usr/bin/env bash
# A withdrawal (a catalog tombstone) that a crash or a partition's move
# interrupts still reaches every published list (docs/COLD-START.md):
#  1. one instance serves the stored users holding the item one a second
#     and is SIGKILLed after its first commits: the exclusion and the
#     catalog position are stored, most holders are not served. Restarted,
#     it finds them again (the partitions' "lists unchecked" mark);
#  2. two instances in a group, the catalog deletes another item; B serves
#     its holders at once, A one a second and is SIGKILLed. B, which had
#     finished its own withdrawal, takes A's partitions from the changelog
#     (A's lists in them) and scans them for every excluded item.
# At the end of each phase no user's last list holds the item. Before the
# marks, both phases ended with holders left: a restart or a new owner did
# not look again.
set -euo pipefail
EVENTS=${EVENTS:-8000} USERS=${USERS:-240} ITEMS=${ITEMS:-200}
. "$(dirname "$0")/lib.sh"
[ -n "${KEEP_DIR:-}" ] && trap - EXIT && echo "keeping $dir"
start_broker 4 ev ev recs items

common=(--set "kafka.bootstrap.servers=$bs" --set topic.events=ev --set topic.recommendations=recs
        --set topic.catalog=items --set kafka.fetch.wait.max.ms=10 --set state.commit.interval.ms=200
        --set metrics.listen= --set log.level=info --set emit.topk=20)
group=(--set group.id=grp --set kafka.partition.assignment.strategy=cooperative-sticky
       --set kafka.session.timeout.ms=6000 --set kafka.heartbeat.interval.ms=500)
slow=(--set emit.withdraw.users.per.tick=1 --set emit.interval.ms=1000)

"$DRIFTREC" demo --bootstrap "$bs" --produce-only --events "$EVENTS" --users "$USERS" --items "$ITEMS" \
    --set topic.events=ev --quiet 2>"$dir/produce.log" || { cat "$dir/produce.log"; exit 1; }

last_lists() {
  "$DRIFTREC" lists --last --items --set "kafka.bootstrap.servers=$bs" --set topic.recommendations=recs 2>/dev/null
}
# the item most last lists hold, and how many hold it
most_held() { last_lists | sed -n 's/.* ids=//p' | tr ',' '\n' | sort | uniq -c | sort -k1,1nr -k2,2n | head -1; }
holders() { last_lists | grep -cE "ids=(.*,)?$1(,|$)" || true; }
delete_item() { printf '%s:\n' "$1" | kcat -P -b "$bs" -t items -K: -Z; }
run_to_end() { # name state [--set ...]
  timeout 120 "$DRIFTREC" run "${common[@]}" --set "state.dir=$2" --set run.exit.idle.ms=1500 "${@:3}" \
      >"$dir/$1.log" 2>&1 || { echo "run $1 failed"; tail -20 "$dir/$1.log"; exit 1; }
}

# ---- 1. a crash in the middle of a withdrawal
run_to_end first "$dir/a" --set ingest.partitions=all --set group.id=one
read -r held x < <(most_held)
[ "$held" -ge 8 ] || { echo "the most held item is in only $held lists"; exit 1; }
delete_item "$x"
"$DRIFTREC" run "${common[@]}" "${slow[@]}" --set "state.dir=$dir/a" --set ingest.partitions=all \
    --set group.id=one >"$dir/crash.log" 2>&1 &
pids+=($!)
crashed=$!
wait_log "$dir/crash.log" "stored users' lists holding withdrawn items found" 30
sleep 1.5 # a commit or more: the exclusion and the catalog's position are stored
kill -9 "$crashed"; wait "$crashed" 2>/dev/null || true
left=$(holders "$x")
[ "$left" -gt 0 ] || { echo "phase 1 proves nothing: every holder was served before the kill"; exit 1; }
# what the kill left in the store: every partition unchecked, the item withdrawn
ledger=$("$DRIFTREC" inspect --state-dir "$dir/a" withdrawals)
grep -qx "unchecked 0-3" <<<"$ledger" && grep -q "^withdrawn $x " <<<"$ledger" ||
  { echo "the ledger after the kill:"; head -3 <<<"$ledger"; exit 1; }
run_to_end restart "$dir/a" --set ingest.partitions=all --set group.id=one
after=$(holders "$x")
[ "$after" -eq 0 ] || { echo "after a crash and a restart, $after of $held last lists still hold deleted item $x"; exit 1; }
grep -q "holding withdrawn items found.* recheck=1" "$dir/restart.log" || { echo "the restart did not recheck"; exit 1; }
[ "$("$DRIFTREC" inspect --state-dir "$dir/a" withdrawals | head -1)" = "unchecked none" ] ||
  { echo "partitions still unchecked after the restart served every holder"; exit 1; }
echo "crash: item $x in $held last lists, $left left at the kill, 0 after the restart"

# ---- 2. a partition moves in the middle of a withdrawal
read -r held2 y < <(most_held)
start() { # name [--set ...]
  "$DRIFTREC" run "${common[@]}" "${group[@]}" --set "state.dir=$dir/$1" "${@:2}" >"$dir/$1.log" 2>&1 &
  pids+=($!)
  eval "pid_$1=$!"
}
# partitions NAME holds now, by its log (cooperative: assigned and revoked a few at a time)
owned() {
  awk '/msg="partitions (assigned|revoked)"/ { n = $0; sub(/.* count=/, "", n); sub(/ .*/, "", n);
       s += (/assigned/ ? n : -n) } END { print s + 0 }' "$dir/$1.log"
}
# waits until NAME holds COUNT partitions
wait_owned() {
  for _ in $(seq 900); do [ "$(owned "$1")" -eq "$2" ] && return 0; sleep 0.1; done
  echo "$1 holds $(owned "$1") partitions, not $2, after 90 s"; grep "partitions" "$dir/$1.log" | tail -5; exit 1
}
start a "${slow[@]}"
start b
wait_owned a 2
wait_owned b 2
delete_item "$y"
wait_log "$dir/b.log" "stored users' lists holding withdrawn items found" 30
wait_log "$dir/a.log" "stored users' lists holding withdrawn items found" 30
sleep 1.5 # a serves one holder a second
kill -9 "$pid_a"; wait "$pid_a" 2>/dev/null || true
left=$(holders "$y")
[ "$left" -gt 0 ] || { echo "phase 2 proves nothing: every holder was served before the kill"; exit 1; }
wait_owned b 4 # once a's session timed out
grep -q "partition restored from the changelog" "$dir/b.log" || { echo "b restored nothing of a's"; tail -5 "$dir/b.log"; exit 1; }
for _ in $(seq 100); do [ "$(holders "$y")" -eq 0 ] && break; sleep 0.1; done
kill -TERM "$pid_b"; wait "$pid_b" || { echo "b did not stop cleanly"; tail -20 "$dir/b.log"; exit 1; }
after=$(holders "$y")
[ "$after" -eq 0 ] ||
  { echo "after a's partitions moved to b, $after of $held2 last lists still hold deleted item $y"; exit 1; }
no_errors b
grep -q "holding withdrawn items found.* recheck=1" "$dir/b.log" || { echo "b did not recheck a's partitions"; exit 1; }
echo "move: item $y in $held2 last lists, $left left when a was killed, 0 once b took a's partitions"
echo "1 passed, 0 failed"
