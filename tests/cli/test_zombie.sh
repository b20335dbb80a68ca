#!/usr/bin/env bash
# A zombie: an instance paused past its session timeout (a long GC pause, a
# frozen VM) that wakes up still believing it owns its partitions (issue 14,
# fencing). Instance A consumes slowly, committing rarely, and is SIGSTOPped
# mid-stream; B joins, takes every partition once A's session expires,
# restores A's last commits from the changelog and consumes the rest of the
# stream; then A is SIGCONTinued. It holds applied, uncommitted events: when
# its commit timer fires before librdkafka tells it the partitions are lost
# (a race, either way in about half the runs), it writes them to the
# changelog on top of B's newer commits, under its old epoch; when it hears
# first, its revoke stores them locally only. Then it dies. B, idle, still
# writes a marker to each of its partitions every second
# (state.changelog.idle.marker.ms): it lands past A's messages, so B finds
# the other writer and writes its partitions' users again (compaction keeps
# its records) before any new event comes; then more events come. A fresh instance
# restores every partition from the changelog alone and reads the topic to
# its end, and A restarts on its own store: for both, every user's
# applied-event counter must equal that of one uninterrupted run (nothing
# lost, nothing applied twice). Before (3338992) the revoke of lost
# partitions wrote them to the changelog too, nothing fenced a former
# owner's writes, and A's stale records and its marker (an events offset B
# had long passed) were the changelog's newest word: the fresh instance
# applied the events after that marker a second time (3 runs of 3 failed).
# The lists carry the same epochs: every user's last list, fenced as a
# consumer should take it, reflects its newest event.
set -euo pipefail
EVENTS=${EVENTS:-6000} USERS=${USERS:-200}
. "$(dirname "$0")/lib.sh"
[ -n "${KEEP_DIR:-}" ] && trap - EXIT && echo "keeping $dir"
start_broker 4 ev ev recs recs_ref
produce "$bs" ev "$EVENTS" "$USERS" 300

common=(--set "kafka.bootstrap.servers=$bs" --set topic.events=ev --set kafka.fetch.wait.max.ms=10
        --set metrics.listen= --set log.level=info --set topic.model=-)
group=(--set group.id=grp --set topic.recommendations=recs
       --set kafka.partition.assignment.strategy=cooperative-sticky
       --set kafka.session.timeout.ms=6000 --set kafka.heartbeat.interval.ms=500)


# A: slow, and a commit only every 4 s, so that it holds applied, uncommitted events when paused;
# it encodes its users 8 at a time ahead of each commit (state.commit.step.users), so that some
# of its changelog records go out before the commit that would carry them
"$DRIFTREC" run "${common[@]}" "${group[@]}" --set "state.dir=$dir/a" --set ingest.max.rate=500 \
    --set ingest.batch=50 --set state.commit.interval.ms=4000 --set state.commit.step.users=8 >"$dir/a.log" 2>&1 &
a=$!; pids+=("$a")
wait_log "$dir/a.log" "partitions assigned" 30
sleep 5
kill -STOP "$a"
"$DRIFTREC" run "${common[@]}" "${group[@]}" --set "state.dir=$dir/b" --set state.commit.interval.ms=200 \
    --set state.changelog.idle.marker.ms=1000 >"$dir/b.log" 2>&1 &
b=$!; pids+=("$b")
wait_log "$dir/b.log" "partitions assigned\" count=4" 60
b_reads() { # B reads the topic to TOTAL
  for _ in $(seq 300); do
    n=$("$DRIFTREC" inspect --state-dir "$dir/b" offsets 2>/dev/null | awk '$1 == "ev" {s += $3} END {print s + 0}')
    [ "$n" -ge "$1" ] && return 0; sleep 0.1
  done
  echo "B stored $n of $1"; tail -5 "$dir/b.log"; exit 1
}
b_reads "$EVENTS" # while A sleeps
sleep 0.5
kill -CONT "$a"
wait_log "$dir/a.log" "partitions lost" 30
sleep 1 # its revoke: the state it applied goes to its own store
kill -9 "$a"; wait "$a" 2>/dev/null || true
# B idle: its markers (every second) find A's messages, if A wrote any. Up to
# 10 s: 3 s, fixed, once passed by under CI's load with 8 of A's messages
# unfound (2026-12-07); A writes in about half the runs, so the other half
# waits the whole 10 s.
for _ in $(seq 50); do grep -q "another instance wrote" "$dir/b.log" && break; sleep 0.2; done
b_idle_lines=$(wc -l <"$dir/b.log")
# more events: B's next changelog messages land past A's, and it writes its users again
produce "$bs" ev 1000 "$USERS" 300 --seed 2
b_reads $((EVENTS + 1000))
sleep 0.5
kill -TERM "$b"; wait "$b" || { echo "B did not stop cleanly"; tail -20 "$dir/b.log"; exit 1; }
no_errors a b

# The lists are fenced too: every user's last list, taken as a consumer
# should (driftrec lists --last: a lower owner epoch than an earlier list
# of the user is skipped), reflects the newest event any list of it
# reflects, although lists A published after waking, if it did, came after
# B's on the topic.
"$DRIFTREC" lists --set "kafka.bootstrap.servers=$bs" --set topic.recommendations=recs >"$dir/lists.txt"
"$DRIFTREC" lists --last --set "kafka.bootstrap.servers=$bs" --set topic.recommendations=recs \
    >"$dir/last.txt" 2>"$dir/last.err"
lists_fenced=$(sed -n 's/.*lists: \([0-9]*\) messages of a former owner fenced.*/\1/p' "$dir/last.err")
python3 - "$dir/lists.txt" "$dir/last.txt" <<'PY'
import sys
def rows(path):
    for line in open(path):
        f = line.split()
        if len(f) >= 4 and f[3].startswith("source="):
            p, o = f[3][7:].split(":")
            yield int(f[0]), (int(p), int(o))
newest, stale = {}, 0
for user, src in rows(sys.argv[1]):
    if user in newest and src < newest[user]:
        stale += 1  # behind an earlier list of the user: a former owner's
    newest[user] = max(newest.get(user, src), src)
last = dict(rows(sys.argv[2]))
assert set(last) == set(newest), (len(last), len(newest))
behind = [u for u in last if last[u] != newest[u]]
assert not behind, f"{len(behind)} users' last list is not their newest, e.g. user {behind[0]}"
print(f"  lists: {stale} published behind a newer list of their user (A's, after waking)")
PY

timeout 120 "$DRIFTREC" run "${common[@]}" --set group.id=ref --set topic.recommendations=recs_ref \
    --set topic.changelog=- --set run.exit.idle.ms=1500 --set "state.dir=$dir/ref" >"$dir/ref.log" 2>&1 ||
  { echo "reference run failed"; tail -20 "$dir/ref.log"; exit 1; }
counters "$dir/ref" >"$dir/ref.txt"

# a fresh instance: the changelog alone
timeout 120 "$DRIFTREC" run "${common[@]}" "${group[@]}" --set group.id=fresh --set "state.dir=$dir/c" \
    --set run.exit.idle.ms=1500 >"$dir/c.log" 2>&1 || { echo "the restoring instance failed"; tail -20 "$dir/c.log"; exit 1; }
counters "$dir/c" >"$dir/c.txt"
fenced=$({ grep -h "former owner ignored" "$dir/c.log" || true; } | sed -n 's/.*records=\([0-9]*\).*/\1/p' | awk '{s += $1} END {print s + 0}')
cmp -s "$dir/ref.txt" "$dir/c.txt" ||
  { echo "restored users differ from the uninterrupted run (fenced $fenced)"; diff "$dir/ref.txt" "$dir/c.txt" | head -6 || true; exit 1; }

# A's writes were found while B was idle, not only once events came again
if [ "$fenced" -gt 0 ] && ! head -n "$b_idle_lines" "$dir/b.log" | grep -q "another instance wrote"; then
  echo "A wrote $fenced changelog messages after losing its partitions and idle B did not find them"; exit 1
fi

# A again, on its own store: what it stored while its partitions were lost
# is not taken over the changelog (it reads them whole and restores B's state)
timeout 120 "$DRIFTREC" run "${common[@]}" "${group[@]}" --set "state.dir=$dir/a" \
    --set run.exit.idle.ms=1500 >"$dir/a2.log" 2>&1 || { echo "A's second run failed"; tail -20 "$dir/a2.log"; exit 1; }
counters "$dir/a" >"$dir/a.txt"
cmp -s "$dir/ref.txt" "$dir/a.txt" ||
  { echo "A's users differ from the uninterrupted run"; diff "$dir/ref.txt" "$dir/a.txt" | head -6 || true; exit 1; }
echo "A paused past its session timeout, B took its 4 partitions and finished the stream, A woke: $fenced changelog"
echo "  messages it wrote before hearing of the loss fenced off (0: librdkafka told it first, and it wrote none);"
echo "  B found another writer in its changelog $(grep -c "another instance wrote" "$dir/b.log" || true) time(s)" \
     "($(head -n "$b_idle_lines" "$dir/b.log" | grep -c "another instance wrote" || true) while idle) and wrote its users again;"
echo "  a fresh instance restored $(wc -l <"$dir/c.txt") users, and A restarted on its own store, every counter as in the uninterrupted run"
echo "  every user's last list (lists --last, ${lists_fenced:-0} of A's fenced off) reflects its newest event"
echo "1 passed, 0 failed"
