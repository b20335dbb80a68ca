#!/usr/bin/env bash
# Crash at any point: the pipeline runs on 200k events over 4 partitions and
# is killed with SIGKILL at seeded random moments (KILLS times, default 20),
# restarted each time, then run to the end. Each restart joins under a new
# consumer group, so only the offsets stored in RocksDB say where to resume
# (and no restart waits for the dead member's session to expire); the rate
# is capped (ingest.max.rate) so that the kills land mid-stream. Every user's applied-event
# counter must equal an uninterrupted run's (nothing lost, nothing twice).
# Then the same on one partition, where the learned vectors must be
# bit-identical. Bounded: every wait has a timeout.
set -euo pipefail
KILLS=${KILLS:-20} EVENTS=${EVENTS:-200000} SEED=${SEED:-1} KILLS1=${KILLS1:-5} EVENTS1=${EVENTS1:-60000}
. "$(dirname "$0")/lib.sh"
[ -n "${KEEP_DIR:-}" ] && trap - EXIT && echo "keeping $dir"
start_broker 4 ev4 recs
produce "$bs" ev4 "$EVENTS" 5000 1000

common=(--set topic.recommendations=recs
        --set kafka.auto.offset.reset=earliest --set kafka.fetch.wait.max.ms=10
        --set ingest.max.rate=10000 --set state.commit.interval.ms=200 --set metrics.listen= --set run.exit.idle.ms=1500 --set log.level=info)

run_to_end() { # state group topic
  timeout 120 "$DRIFTREC" run "${common[@]}" --set "kafka.bootstrap.servers=$bs" --set "state.dir=$1" --set "group.id=$2" --set "topic.events=$3" \
      >"$dir/$2.end.log" 2>&1 || { echo "run $2 failed"; tail -20 "$dir/$2.end.log"; exit 1; }
}

crash_runs() { # state group topic
  local rng=$SEED
  for k in $(seq 1 "$KILLS"); do
    "$DRIFTREC" run "${common[@]}" --set "kafka.bootstrap.servers=$bs" --set "state.dir=$1" --set "group.id=$2-$k" --set "topic.events=$3" \
        >"$dir/$2.$k.log" 2>&1 &
    local p=$!
    pids+=("$p")
    for _ in $(seq 600); do grep -q "partitions assigned" "$dir/$2.$k.log" && break; sleep 0.05; done
    rng=$(( (rng * 1103515245 + 12345) % 2147483648 ))
    sleep "$(( rng % 2 )).$(printf '%03d' $(( rng % 1000 )))"   # 0 to 2 s into the processing
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    printf ' %s' "$("$DRIFTREC" inspect --state-dir "$1" users 2>/dev/null | awk '{s += $2} END {print s + 0}')" >>"$dir/$2.stored"
  done
}

counters() { "$DRIFTREC" inspect --state-dir "$1" users "${@:2}" | sort -n; }

# 4 partitions: counters must match
run_to_end "$dir/ref4" ref4 ev4
crash_runs "$dir/crash4" crash4 ev4
run_to_end "$dir/crash4" crash4 ev4
counters "$dir/ref4" >"$dir/ref4.txt"
counters "$dir/crash4" >"$dir/crash4.txt"
total=$(awk '{s += $2} END {print s}' "$dir/ref4.txt")
[ "$total" -eq "$EVENTS" ] || { echo "reference applied $total of $EVENTS events"; exit 1; }
diff -q "$dir/ref4.txt" "$dir/crash4.txt" >/dev/null || { echo "counters differ after $KILLS kills"; diff "$dir/ref4.txt" "$dir/crash4.txt" | head; exit 1; }
echo "events stored at each kill:$(cat "$dir/crash4.stored")"
echo "4 partitions: $KILLS kills, $(wc -l <"$dir/ref4.txt") users, $total events applied exactly once"

# 1 partition: the order of events is fixed, so the learned parameters must
# be bit-identical (v_u and b_u compared as exact hex floats)
start_broker 1 ev1 recs
produce "$bs" ev1 "$EVENTS1" 5000 1000
run_to_end "$dir/ref1" ref1 ev1
KILLS=$KILLS1 crash_runs "$dir/crash1" crash1 ev1
run_to_end "$dir/crash1" crash1 ev1
counters "$dir/ref1" --vectors >"$dir/ref1.txt"
counters "$dir/crash1" --vectors >"$dir/crash1.txt"
cmp -s "$dir/ref1.txt" "$dir/crash1.txt" || { echo "1 partition: parameters differ after $KILLS1 kills"; diff "$dir/ref1.txt" "$dir/crash1.txt" | head -4; exit 1; }
echo "events stored at each kill (1 partition):$(cat "$dir/crash1.stored")"
echo "1 partition: $KILLS1 kills, $(wc -l <"$dir/ref1.txt") users, v_u and b_u bit-identical"
echo "1 passed, 0 failed"
