#!/usr/bin/env bash
# bench/quality.sh - what splitting the users over instances costs in list
# quality, and what sharing the items buys back: the same open-loop stream
# (EVENTS events of USERS users, ITEMS items, 12 partitions) consumed by 1
# instance, and by 3 instances in one group sharing their item changes every
# model.sync.interval.ms (1 s and 10 s) or not at all (topic.model=-).
# Quality: hr@10 of the clicks of users that had a list (the click's item in
# the head of the user's last list), summed over the instances of a group,
# as `driftrec run` logs it when it stops. Medians over RUNS.
#
#   bench/quality.sh [RUNS]     (default 3)
# Environment: EVENTS (400000), USERS (20000), ITEMS (2000), DRIFTREC (build/driftrec),
#              SETS (more --set options for every instance, e.g. "learner.cooc.neighbors=0"),
#              RATE (ingest.max.rate per instance; 0: as fast as it goes).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
EVENTS=${EVENTS:-400000} USERS=${USERS:-20000} ITEMS=${ITEMS:-2000} RATE=${RATE:-0}
extra=(--set "ingest.max.rate=$RATE")
for kv in ${SETS:-}; do extra+=(--set "$kv"); done
bin=${DRIFTREC:-build/driftrec}
out=$(mktemp -d /tmp/driftrec-quality-XXXXXX)
broker_pid=""
cleanup() { [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null; pkill -f "state.dir=$out" 2>/dev/null; wait 2>/dev/null; rm -rf "$out"; }
trap cleanup EXIT

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "stream: $EVENTS open-loop events, $USERS users, $ITEMS items, 12 partitions, embedded broker; rate $RATE; sets: ${SETS:-none}"
configs=("1:1000" "3:1000" "3:10000" "3:off") # instances:model.sync.interval.ms ("off": no model topic)
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
declare -A hr
for run in $(seq 1 "$runs"); do
  topics=(--topic ev --topic recs)
  for i in "${!configs[@]}"; do topics+=(--topic "c$i"); done # c$i.changelog, c$i.model
  "$bin" broker --partitions 12 "${topics[@]}" > "$out/broker.txt" 2>"$out/broker.log" &
  broker_pid=$!
  for _ in $(seq 200); do [ -s "$out/broker.txt" ] && break; sleep 0.1; done
  bs=$(head -1 "$out/broker.txt")
  "$bin" demo --bootstrap "$bs" --produce-only --scenario openloop --events "$EVENTS" --users "$USERS" --items "$ITEMS" \
      --set topic.events=ev --quiet 2>"$out/produce.log"
  for i in "${!configs[@]}"; do
    c=${configs[$i]} n=${configs[$i]%%:*} interval=${configs[$i]##*:}
    model="c$i.model"
    [ "$interval" = off ] && { model=-; interval=1000; }
    ipids=()
    for k in $(seq 1 "$n"); do
      "$bin" run --set "kafka.bootstrap.servers=$bs" --set topic.events=ev --set topic.recommendations=recs \
          --set "group.id=g$run-$i" --set "topic.changelog=c$i.changelog" --set "topic.model=$model" \
          --set "model.sync.interval.ms=$interval" --set metrics.listen= --set run.exit.idle.ms=4000 \
          --set kafka.session.timeout.ms=6000 --set log.level=info --set "state.dir=$out/r$run-$i-$k" "${extra[@]}" \
          >"$out/r$run-$i-$k.log" 2>&1 &
      ipids+=($!)
    done
    wait "${ipids[@]}" || { echo "$c: an instance failed"; tail -3 "$out/r$run-$i"-*.log; exit 1; }
    h=$(cat "$out/r$run-$i"-*.log | sed -n 's/.*msg="stopped".*clicks_scored=\([0-9]*\) click_hits=\([0-9]*\).*/\1 \2/p' |
        awk '{s += $1; h += $2} END {printf "%.4f %d", h / s, s}')
    echo "run $run, $n instance(s), sync ${configs[$i]##*:}: hr@10 ${h% *} over ${h#* } clicks"
    hr[$c]+="${h% *} "
    rm -rf "$out/r$run-$i"-*/
  done
  kill "$broker_pid"; wait "$broker_pid" 2>/dev/null || true; broker_pid=""
done
# shellcheck disable=SC2086
base=$(median ${hr[1:1000]})
for c in "${configs[@]}"; do
  # shellcheck disable=SC2086
  m=$(median ${hr[$c]})
  echo "median: ${c%%:*} instance(s), sync ${c##*:}: hr@10 $m ($(python3 -c "print(f'{$m / $base:.3f}')")x one instance)"
done
