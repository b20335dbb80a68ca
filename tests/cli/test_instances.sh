#!/usr/bin/env bash
# Many instances in one consumer group (issue 14): three instances share a
# stream of 12 partitions (cooperative-sticky assignment, erase requests
# mixed in, consumption capped so the moves land mid-stream); one is
# SIGKILLed, a fourth joins with an empty state directory, another leaves
# gracefully, and the killed one comes back on its old (now stale) state, so
# partitions move back and forth several times. Then a fifth instance with
# an empty state directory takes every partition and restores it from the
# changelog alone. The group's instances build their commits in steps of 4
# users (state.commit.step.users), whose changelog records go out ahead of
# the commit's marker. Two of the instances (a and d) keep standby replicas of
# the partitions they do not own, so that their takeovers start from a warm
# copy while the others restore on assignment. Against a single
# uninterrupted instance on the same stream:
#   - every user's applied-event counter in the restored state is equal
#     (nothing lost, nothing applied twice across the moves), and the same
#     users are stored (every erase holds);
#   - the authoritative state of each partition (the instance that stored
#     the highest offset for it, a standby copy included) holds the same
#     counters;
#   - the standby replicas applied users and no read of theirs failed;
#   - every user's last message on the group's recommendations topic
#     reflects the same newest event (or is the same tombstone);
#   - the last instance standing and the fresh one, whose items came from
#     the model topic alone, agree on every item to float rounding (shared
#     parameters), the killed instance's unpublished changes included.
set -euo pipefail
EVENTS=${EVENTS:-30000} USERS=${USERS:-600} RATE=${RATE:-300} ERASE_SHARE=${ERASE_SHARE:-0.005}
. "$(dirname "$0")/lib.sh"
[ -n "${KEEP_DIR:-}" ] && trap - EXIT && echo "keeping $dir"
start_broker 12 ev ev recs_ref recs_grp
produce "$bs" ev "$EVENTS" "$USERS" 500 --erase-share "$ERASE_SHARE"
erases=$(sed -n 's/^produced \([0-9]*\) erase requests.*/\1/p' "$dir/produce.log")
records=$((EVENTS + ${erases:-0}))

common=(--set "kafka.bootstrap.servers=$bs" --set topic.events=ev --set kafka.fetch.wait.max.ms=10
        --set emit.topk=10 --set state.commit.interval.ms=200 --set metrics.listen= --set log.level=info)
group=(--set group.id=grp --set topic.recommendations=recs_grp
       --set kafka.partition.assignment.strategy=cooperative-sticky
       --set kafka.session.timeout.ms=6000 --set kafka.heartbeat.interval.ms=500)

# the reference: one instance, no changelog, no moves
timeout 120 "$DRIFTREC" run "${common[@]}" --set group.id=ref --set topic.recommendations=recs_ref \
    --set topic.changelog=- --set topic.model=- --set run.exit.idle.ms=1500 --set "state.dir=$dir/ref" >"$dir/ref.log" 2>&1 ||
  { echo "reference run failed"; tail -20 "$dir/ref.log"; exit 1; }

declare -A pid_of
start() { # name [extra --set ...]
  "$DRIFTREC" run "${common[@]}" "${group[@]}" --set ingest.max.rate="$RATE" --set ingest.batch=50 \
      --set state.commit.step.users=4 --set "state.dir=$dir/$1" "${@:2}" \
      >>"$dir/$1.log" 2>&1 &
  pids+=($!)
  pid_of[$1]=$!
}
# records consumed and stored, per partition the highest offset any state holds
stored_total() {
  for s in "$dir"/inst-?; do "$DRIFTREC" inspect --state-dir "$s" offsets 2>/dev/null || true; done |
    awk '$1 == "ev" { if ($3 > m[$2]) m[$2] = $3 } END { for (p in m) s += m[p]; print s + 0 }'
}
moves() { cat "$dir"/inst-?.log | grep -c "partition restored from the changelog" || true; }

# A member that joins after the group formed waits for the cooperative
# rounds (~10 s here, 10-20 s on the embedded broker by
# ../shared/docs/STACK-NOTES.md, longer under CI's load): the waits leave it
# 90 s, and a member that never gets partitions shows every instance's group
# history, since the cause may lie with another member.
wait_assigned() { # name
  for _ in $(seq 1800); do grep -q "partitions assigned" "$dir/$1.log" 2>/dev/null && return 0; sleep 0.05; done
  echo "$1: no \"partitions assigned\" within 90 s; the group's history:"
  grep -H "mod=ingest\|mod=kafka" "$dir"/inst-?.log | grep -v 'msg="progress"' | tail -40
  tail -5 "$dir/$1.log"; exit 1
}

standby=(--set state.standby.interval.ms=300)
start inst-a "${standby[@]}"; start inst-b; start inst-c
wait_assigned inst-a
wait_assigned inst-c
sleep 6
kill -9 "${pid_of[inst-b]}"; wait "${pid_of[inst-b]}" 2>/dev/null || true
echo "killed b at $(stored_total) of $records records"
start inst-d "${standby[@]}"
wait_assigned inst-d
sleep 6
kill -TERM "${pid_of[inst-c]}"; wait "${pid_of[inst-c]}" || { echo "c did not stop cleanly"; tail -20 "$dir/inst-c.log"; exit 1; }
echo "c left at $(stored_total) of $records records"
start inst-b
wait_assigned inst-b
for _ in $(seq 600); do [ "$(stored_total)" -ge "$records" ] && break; sleep 0.2; done
[ "$(stored_total)" -ge "$records" ] || { echo "stalled at $(stored_total) of $records records"; tail -n 5 "$dir"/inst-*.log; exit 1; }
sleep 1 # the last lists of the last commit
for n in inst-a inst-d inst-b; do
  kill -TERM "${pid_of[$n]}"; wait "${pid_of[$n]}" || { echo "$n did not stop cleanly"; tail -20 "$dir/$n.log"; exit 1; }
done
no_errors inst-a inst-b inst-c inst-d # librdkafka's transient ones (a request timed out under load) are not
# the commits were built in steps (the check below holds them to the reference)
steps=$(grep -ho 'msg="stopped" .* commit_steps=[0-9]*' "$dir"/inst-?.log | sed 's/.*commit_steps=//' | awk '{s += $1} END {print s + 0}')
[ "$steps" -gt 0 ] || { echo "no commit was built in steps"; exit 1; }
restores=$(moves)
for n in inst-a inst-d; do # the standby's totals at the stop: users applied, no failure
  line=$(grep 'msg="stopped standby"' "$dir/$n.log") || { echo "$n kept no standby"; exit 1; }
  warm=$(sed -n 's/.* users=\([0-9]*\).*/\1/p' <<<"$line") failed=$(sed -n 's/.* failures=\([0-9]*\).*/\1/p' <<<"$line")
  [ "$warm" -gt 0 ] && [ "$failed" -eq 0 ] || { echo "$n's standby: $line"; exit 1; }
  standby_users+="$n $warm, "
done

counters "$dir/ref" >"$dir/ref.txt"
[ "$(wc -l <"$dir/ref.txt")" -gt 0 ] || { echo "the reference stored no user"; exit 1; }

# a fresh instance restores every partition from the changelog alone
timeout 120 "$DRIFTREC" run "${common[@]}" "${group[@]}" --set "state.dir=$dir/inst-e" --set run.exit.idle.ms=1500 \
    >"$dir/inst-e.log" 2>&1 || { echo "restoring instance failed"; tail -20 "$dir/inst-e.log"; exit 1; }
counters "$dir/inst-e" >"$dir/e.txt"
cmp -s "$dir/ref.txt" "$dir/e.txt" ||
  { echo "restored users differ from the uninterrupted run"; diff "$dir/ref.txt" "$dir/e.txt" | head -6 || true; exit 1; }
restored=$(grep -c "partition restored from the changelog" "$dir/inst-e.log" || true)
[ "$restored" -eq 12 ] || { echo "the fresh instance restored $restored of 12 partitions"; exit 1; }

# the authoritative copy of each partition: the state that stored the highest offset for it
for p in $(seq 0 11); do
  best=""; hi=-1
  for s in "$dir"/inst-a "$dir"/inst-b "$dir"/inst-c "$dir"/inst-d; do
    o=$("$DRIFTREC" inspect --state-dir "$s" offsets 2>/dev/null | awk -v p="$p" '$1 == "ev" && $2 == p {print $3}')
    if [ -n "$o" ] && [ "$o" -gt "$hi" ]; then hi=$o; best=$s; fi
  done
  "$DRIFTREC" inspect --state-dir "$best" --json users |
    python3 -c 'import json, sys; [print(u["user_id"], u["events_applied"]) for u in json.load(sys.stdin) if u["partition"] == int(sys.argv[1])]' "$p"
done | sort -n >"$dir/owners.txt"
cmp -s "$dir/ref.txt" "$dir/owners.txt" ||
  { echo "the owners' states differ from the uninterrupted run"; diff "$dir/ref.txt" "$dir/owners.txt" | head -6 || true; exit 1; }

# item parameters: the last instance standing (b) and the fresh one (e, whose items come from the
# model topic alone) both hold the sum of every instance's changes; the one that left mid-run (c)
# is behind by what was learned after it left (shown for scale). Compared coordinate by coordinate.
items() { "$DRIFTREC" inspect --state-dir "$1" items | sort -n; }
# b stopped right after the others: their last changes may have been on their way to it. It
# catches up from its stored model-topic positions, as any instance does at its next start
# (the staleness that remains between instances is the sync interval, not a loss).
timeout 120 "$DRIFTREC" run "${common[@]}" "${group[@]}" --set "state.dir=$dir/inst-b" --set run.exit.idle.ms=1500 \
    >"$dir/inst-b.catch-up.log" 2>&1 ||
  { echo "b's catch-up run failed"; tail -20 "$dir/inst-b.catch-up.log"; exit 1; }
items "$dir/inst-b" >"$dir/b.items"; items "$dir/inst-e" >"$dir/e.items"; items "$dir/inst-c" >"$dir/c.items"
cat >"$dir/items.py" <<'PY'
import sys
def load(p):
    return {int(l.split()[0]): [float.fromhex(x) for x in l.split()[1:]] for l in open(p)}
b, e, c = (load(p) for p in sys.argv[1:4])
def diff(x, y):
    common = sorted(set(x) & set(y))
    return sorted(max(abs(u - v) for u, v in zip(x[i], y[i])) for i in common), len(set(x) ^ set(y))
d, only = diff(b, e)
dc, _ = diff(b, c)
close = sum(v < 1e-2 for v in d) / max(len(d), 1)
p99 = d[min(len(d) - 1, int(len(d) * 0.99))]
print(f"{close:.4f} {only} {len(d)} {d[len(d) // 2]:.1e} {dc[len(dc) // 2]:.1e} {p99:.1e}")
PY
read -r agree only compared med_be med_bc p99_be < <(python3 "$dir/items.py" "$dir/b.items" "$dir/e.items" "$dir/c.items")
echo "items: $compared compared, $only in one of b/e only; share within 1e-2 of each other: $agree;"
echo "  largest coordinate difference b-e: median $med_be, p99 $p99_be (b-c, c having left mid-run: median $med_bc)"
# Every item agrees to float rounding (sums added in another order): b's changes that its
# kill caught between two publications were stored with its commit and published by its next
# process, and what its dead process published past its last commit, its next process added
# as the others did. (Before, b kept to itself what it had committed but not yet published,
# up to a second of learning: under load, ~40% of the items apart in 2 runs of 5.)
python3 -c "import sys; sys.exit(0 if $only == 0 and $agree == 1.0 and $p99_be <= 1e-4 else 1)" ||
  { echo "the items of b and of the fresh instance disagree"; exit 1; }

last_lists() {
  "$DRIFTREC" lists --last --set "kafka.bootstrap.servers=$bs" --set "topic.recommendations=$1" | awk '{print $1, $4}' | sort -n
}
last_lists recs_ref >"$dir/ref.lists"
last_lists recs_grp >"$dir/grp.lists"
cmp -s "$dir/ref.lists" "$dir/grp.lists" ||
  { echo "last lists differ from the uninterrupted run"; diff "$dir/ref.lists" "$dir/grp.lists" | head -6 || true; exit 1; }

echo "12 partitions, $records records ($erases erases) of $USERS users over 4 instances (b killed and back, d joined,"
echo "  c left): $restores partition restores from the changelog during the run; a fresh instance restored all 12;
  standby replicas applied ${standby_users%, } user records; $steps commit steps;"
echo "  $(wc -l <"$dir/ref.txt") users with counters, and $(wc -l <"$dir/ref.lists") last lists, as in the uninterrupted run"
echo "1 passed, 0 failed"
