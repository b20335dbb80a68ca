#!/usr/bin/env bash
# bench/standby.sh - what standby replicas save at a handover, and what they
# cost. Two instances of one group share PARTITIONS partitions of a live
# stream (each consuming at most RATE events/s); after HANDOVER_S seconds
# instance A stops (gracefully, or LEAVE=kill: SIGKILL, so that B takes the
# partitions after the session timeout, 6 s here, and reads what A's last
# commits wrote) and B takes A's partitions over. Run twice:
# without standby replicas (B restores A's partitions from their changelog,
# whole), and with state.standby.interval.ms=INTERVAL on both (B reads only
# what A committed since B's last round). Prints, per mode and run, B's
# restores at the handover (changelog records read, users applied, seconds)
# and the CPU seconds A and B used before it (the standby's cost), then the
# medians over RUNS.
#
#   bench/standby.sh [RUNS]     (default 3)
# Environment: USERS (50000), EVENTS (20 per user), PARTITIONS (32), RATE
#              (15000 per instance), HANDOVER_S (25), INTERVAL (1000), DIM (32),
#              LEAVE (term | kill),
#              DRIFTREC (build/driftrec). The embedded broker keeps ~5 MiB per
#              partition: keep the users reached × ~2 KB under PARTITIONS × 5 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
USERS=${USERS:-50000} PARTITIONS=${PARTITIONS:-32} RATE=${RATE:-15000} HANDOVER_S=${HANDOVER_S:-25}
INTERVAL=${INTERVAL:-1000} DIM=${DIM:-32} LEAVE=${LEAVE:-term}
EVENTS=${EVENTS:-$((USERS * 20))}
bin=${DRIFTREC:-build/driftrec}
out=$(mktemp -d /tmp/driftrec-standby-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$out"; }
trap cleanup EXIT

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "scenario: $USERS users, $EVENTS events, $PARTITIONS partitions, 2 instances at <= $RATE events/s each," \
     "A leaves (SIG${LEAVE^^}) after ${HANDOVER_S} s; standby interval $INTERVAL ms; d=$DIM"
cpu_s() { awk '{printf "%.1f", ($14 + $15) / 100}' "/proc/$1/stat"; }
wait_log() { # file pattern seconds [min count]
  for _ in $(seq $(($3 * 10))); do [ "$(grep -c "$2" "$1" || true)" -ge "${4:-1}" ] && return 0; sleep 0.1; done
  echo "timed out waiting for '$2' in $1" >&2; tail -5 "$1" >&2; exit 1
}
sum_after() { # log first-line field: sum of field=VALUE over the restore lines from that line on
  tail -n +"$2" "$1" | { grep "partition restored from the changelog" || true; } |
    sed -n "s/.* $3=\([0-9.]*\).*/\1/p" | awk '{s += $1} END {print s + 0}'
}
declare -A results
for run in $(seq 1 "$runs"); do
  for mode in off on; do
    d="$out/$mode$run"; mkdir -p "$d"
    "$bin" broker --partitions "$PARTITIONS" --topic ev --topic recs >"$d/broker.txt" 2>"$d/broker.log" &
    broker=$!; pids+=("$broker")
    for _ in $(seq 50); do [ -s "$d/broker.txt" ] && break; sleep 0.1; done
    bs=$(head -1 "$d/broker.txt")
    "$bin" demo --bootstrap "$bs" --produce-only --scenario openloop --events "$EVENTS" --users "$USERS" --items 5000 \
        --set topic.events=ev --quiet 2>"$d/produce.log"
    interval=0; [ "$mode" = on ] && interval=$INTERVAL
    common=(--set "kafka.bootstrap.servers=$bs" --set topic.events=ev --set topic.recommendations=recs
            --set group.id=g --set learner.dim="$DIM" --set metrics.listen= --set log.level=info
            --set ingest.max.rate="$RATE" --set kafka.partition.assignment.strategy=cooperative-sticky
            --set kafka.session.timeout.ms=6000 --set kafka.heartbeat.interval.ms=500
            --set state.standby.interval.ms="$interval")
    "$bin" run "${common[@]}" --set "state.dir=$d/a" >"$d/a.log" 2>&1 & a=$!; pids+=("$a")
    wait_log "$d/a.log" "partitions assigned" 30
    "$bin" run "${common[@]}" --set "state.dir=$d/b" >"$d/b.log" 2>&1 & b=$!; pids+=("$b")
    wait_log "$d/b.log" "partitions assigned" 30
    sleep "$HANDOVER_S"
    cpu_a=$(cpu_s "$a") cpu_b=$(cpu_s "$b")
    from=$(($(wc -l <"$d/b.log") + 1))
    assigned=$(grep -c "partitions assigned" "$d/b.log")
    kill -"${LEAVE^^}" "$a"; wait "$a" 2>/dev/null || true
    wait_log "$d/b.log" "partitions assigned" 60 $((assigned + 1))
    kill -TERM "$b"; wait "$b" || true
    records=$(sum_after "$d/b.log" "$from" records) users=$(sum_after "$d/b.log" "$from" users)
    secs=$(sum_after "$d/b.log" "$from" seconds)
    parts=$(tail -n +"$from" "$d/b.log" | grep -c "partition restored from the changelog" || true)
    echo "run $run, standby $mode: handover restored $parts partitions: $records changelog records read," \
         "$users users applied in $secs s; CPU before it: A $cpu_a s, B $cpu_b s"
    results[$mode.records]+="$records " results[$mode.secs]+="$secs " results[$mode.cpu]+="$(python3 -c "print($cpu_a + $cpu_b)") "
    kill "$broker"; wait "$broker" 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$d"
  done
done
median() { printf '%s\n' $1 | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
for mode in off on; do
  echo "median, standby $mode: $(median "${results[$mode.records]}") records read at the handover in" \
       "$(median "${results[$mode.secs]}") s; $(median "${results[$mode.cpu]}") CPU s (A + B) before it"
done
