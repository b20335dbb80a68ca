#!/usr/bin/env bash
# bench/instances.sh - end-to-end throughput with 1 and 2 instances in one
# consumer group (and 1 without a changelog, its cost), on one standalone
# embedded broker: the open-loop stream (EVENTS events of USERS users over
# PARTITIONS partitions) is produced once; each configuration then consumes
# all of it in a new group with fresh state directories and its own
# changelog topic. Events/s from the first partition assignment to the
# moment every event is stored (offsets in the instances' states), and the
# steady rate between 10% and 90% of the events stored, which leaves out the
# group's joins and the last partitions' tail (both weigh more the faster the
# group is), and the cores the instances kept busy over the interval. The broker
# runs on the same cores: its share is printed (CPU seconds over the
# measured interval). Medians over RUNS.
#
#   bench/instances.sh [RUNS]     (default 3)
# Environment: EVENTS (1000000), USERS (100000), PARTITIONS (24), COUNTS ("1 2"),
#              DRIFTREC (build/driftrec), STATIC (0; 1: each instance is given
#              its range of the partitions with ingest.partitions and a group
#              id of its own, so no group join or rebalance is timed).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
EVENTS=${EVENTS:-1000000} USERS=${USERS:-100000} PARTITIONS=${PARTITIONS:-24} COUNTS=${COUNTS:-"1 2"}
STATIC=${STATIC:-0}
bin=${DRIFTREC:-build/driftrec}
out=$(mktemp -d /tmp/driftrec-instances-XXXXXX)
broker_pid=""
cleanup() { [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null; pkill -f "state.dir=$out" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$out"; }
trap cleanup EXIT

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
     "$(lscpu 2>/dev/null | sed -n 's/^Thread(s) per core: *//p' || echo '?') thread(s) per core"
echo "stream: $EVENTS events, $USERS users, $PARTITIONS partitions (open loop), embedded broker on the same machine"
[ "$STATIC" = 1 ] && echo "placement: static (ingest.partitions), no consumer group"
stored_total() { # records stored, over every state directory of the run (highest offset per partition)
  for s in "$out"/"$1"-*/; do "$bin" inspect --state-dir "$s" offsets 2>/dev/null & done | # side by side: 8 take no longer than 1
    awk '$1 == "ev" { if ($3 > m[$2]) m[$2] = $3 } END { for (p in m) s += m[p]; print s + 0 }'
}
cpu_s() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; } # utime + stime of a process
now() { date +%s.%N; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

configs=("1:off") # instances:changelog ("off": none, "on": its own topic)
for n in $COUNTS; do configs+=("$n:on"); done
declare -A rates steadies shares
for run in $(seq 1 "$runs"); do
  topics=(--topic ev --topic recs)
  for c in "${configs[@]}"; do topics+=(--topic "cl-${c%%:*}"); done
  "$bin" broker --partitions "$PARTITIONS" "${topics[@]}" > "$out/broker.txt" 2>"$out/broker.log" &
  broker_pid=$!
  for _ in $(seq 200); do [ -s "$out/broker.txt" ] && break; sleep 0.1; done
  bs=$(head -1 "$out/broker.txt")
  "$bin" demo --bootstrap "$bs" --produce-only --scenario openloop --events "$EVENTS" --users "$USERS" --items 10000 \
      --set topic.events=ev --quiet 2>"$out/produce.log"
  total=$(kcat -C -b "$bs" -t ev -o beginning -e -q -f '.' | wc -c)
  for c in "${configs[@]}"; do
    n=${c%%:*} cl=${c##*:} tag="r$run-${c/:/-}"
    if [ "$cl" = on ]; then cl="cl-$n"; else cl=-; fi
    ipids=()
    for i in $(seq 1 "$n"); do
      placement=(--set "group.id=$tag")
      if [ "$STATIC" = 1 ]; then # partitions [(i-1)P/n, iP/n), each instance its own group id
        placement=(--set "group.id=$tag-$i" --set "ingest.partitions=$(((i - 1) * PARTITIONS / n))-$((i * PARTITIONS / n - 1))")
      fi
      "$bin" run --set "kafka.bootstrap.servers=$bs" --set topic.events=ev --set topic.recommendations=recs \
          --set "topic.changelog=$cl" "${placement[@]}" --set metrics.listen= --set run.exit.idle.ms=3000 \
          --set kafka.queued.min.messages=1000000 --set log.level=info --set "state.dir=$out/$tag-$i" \
          >"$out/$tag-$i.log" 2>&1 &
      ipids+=($!)
    done
    for _ in $(seq 600); do grep -q "partitions assigned" "$out/$tag-1.log" && break; sleep 0.05; done
    t0=$(now); b0=$(cpu_s "$broker_pid") t10="" t90="" i0=0
    for ip in "${ipids[@]}"; do i0=$(python3 -c "print($i0 + $(cpu_s "$ip"))"); done
    while :; do
      stored=$(stored_total "$tag")
      [ -z "$t10" ] && [ "$stored" -ge $((total / 10)) ] && t10=$(now) s10=$stored
      [ -z "$t90" ] && [ "$stored" -ge $((total * 9 / 10)) ] && t90=$(now) s90=$stored
      [ "$stored" -ge "$total" ] && break
      sleep 0.2
    done
    t1=$(now); b1=$(cpu_s "$broker_pid") i1=0
    for ip in "${ipids[@]}"; do i1=$(python3 -c "print($i1 + $(cpu_s "$ip"))"); done
    wait "${ipids[@]}" || { echo "$tag: an instance failed"; tail -5 "$out/$tag"-*.log; exit 1; }
    rate=$(python3 -c "print(round($total / ($t1 - $t0)))")
    # a run too short for a poll between 10% and 90% has no steady rate
    steady=$(python3 -c "print(round(($s90 - $s10) / ($t90 - $t10)) if $s90 > $s10 and $t90 > $t10 else 'nan')")
    share=$(python3 -c "print(round(($b1 - $b0) / ($t1 - $t0) / $(nproc) * 100))")
    busy=$(python3 -c "print(round(($i1 - $i0) / ($t1 - $t0), 2))") # cores the instances kept busy
    echo "run $run, $n instance(s), changelog ${c##*:}: $rate events/s (steady $steady), instances $busy cores busy, broker $share% of the cores"
    rates[$c]+="$rate " steadies[$c]+="$steady " shares[$c]+="$share "
    rm -rf "$out/$tag"-*/
  done
  kill "$broker_pid"; wait "$broker_pid" 2>/dev/null || true; broker_pid=""
done
base="" base_steady=""
for c in "${configs[@]}"; do
  # shellcheck disable=SC2086
  r=$(median ${rates[$c]}) st=$(median ${steadies[$c]}) s=$(median ${shares[$c]})
  [ "$c" = "1:on" ] && base=$r base_steady=$st
  echo "median: ${c%%:*} instance(s), changelog ${c##*:}: $r events/s, steady $st (broker $s% of the cores)"
done
for n in $COUNTS; do
  # shellcheck disable=SC2086
  [ -n "$base" ] && echo "speed-up of $n instances over 1 (changelog on): $(python3 -c "print(round($(median ${rates[$n:on]}) / $base, 2))")x, steady $(python3 -c "print(round(float('$(median ${steadies[$n:on]})') / float('$base_steady'), 2))")x"
done
