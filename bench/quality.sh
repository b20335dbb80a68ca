#!/usr/bin/env bash
# bench/quality.sh - what splitting the users over instances costs in list
# quality, and what sharing the items buys back: the same open-loop stream
# (EVENTS events of USERS users, ITEMS items, 12 partitions) consumed by 1
# instance, and by 3 instances in one group sharing their item changes every
# model.sync.interval.ms (1 s and 10 s) or not at all (topic.model=-).
# LIVE_RATE=R instead starts each group's instances first, lets the group
# settle, and then produces the stream to a topic of its own, every instance
# capped at R / instances events/s: a live stream that the group keeps up
# with, no partition moving while there are events (the default replays a
# backlog as fast as the instances go, moves included); LIVE_RATE=0: settled
# first, then as fast as they go.
# Quality, summed over the instances of a group as `driftrec run` logs it
# when it stops, medians over RUNS:
#   lists hr@10: the clicks of users that had a list whose item was in the
#     head of the user's last list (depends on when lists were emitted, so
#     on each instance's speed);
#   lists hits per click: the same hits over every click (a click without a
#     list a miss): a group that lists users sooner scores more clicks, the
#     early ones hard, which lowers hr@10 but not this;
#   model hr@10: the clicks whose item ranked in the top 10 under the model
#     just before the click (eval.rank.clicks: test-then-train, timing-free).
#
#   bench/quality.sh [RUNS]     (default 3)
# Environment: EVENTS (400000), USERS (20000), ITEMS (2000), DRIFTREC (build/driftrec),
#              SETS (more --set options for every instance, e.g. "learner.cooc.neighbors=0"),
#              RATE (ingest.max.rate per instance; 0: as fast as it goes),
#              LIVE_RATE (see above; RATE is then ignored),
#              CONFIGS (instances:model.sync.interval.ms ..., the first the baseline;
#                       default "1:1000 3:1000 3:10000 3:off"; "off": nothing shared),
#              KEEP (1: keep the instances' logs, named at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
EVENTS=${EVENTS:-400000} USERS=${USERS:-20000} ITEMS=${ITEMS:-2000} RATE=${RATE:-0}
extra=(--set eval.rank.clicks=true)
for kv in ${SETS:-}; do extra+=(--set "$kv"); done
bin=${DRIFTREC:-build/driftrec}
out=$(mktemp -d /tmp/driftrec-quality-XXXXXX)
broker_pid=""
cleanup() {
  [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null
  pkill -f "state.dir=$out" 2>/dev/null || true
  wait 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "logs kept in $out"; else rm -rf "$out"; fi
}
trap cleanup EXIT

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "stream: $EVENTS open-loop events, $USERS users, $ITEMS items, 12 partitions, embedded broker; rate $RATE; live rate ${LIVE_RATE:-none}; sets: ${SETS:-none}"
# instances:model.sync.interval.ms ("off": no model topic); the first is the baseline
read -r -a configs <<<"${CONFIGS:-1:1000 3:1000 3:10000 3:off}"
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
declare -A hr mr pr
for run in $(seq 1 "$runs"); do
  topics=(--topic ev --topic recs)
  for i in "${!configs[@]}"; do topics+=(--topic "c$i" --topic "e$i"); done # c$i.changelog, c$i.model; e$i: live

  "$bin" broker --partitions 12 "${topics[@]}" > "$out/broker.txt" 2>"$out/broker.log" &
  broker_pid=$!
  for _ in $(seq 200); do [ -s "$out/broker.txt" ] && break; sleep 0.1; done
  bs=$(head -1 "$out/broker.txt")
  stream() {
    "$bin" demo --bootstrap "$bs" --produce-only --scenario openloop --events "$EVENTS" --users "$USERS" --items "$ITEMS" \
        --set "topic.events=$1" --quiet 2>"$out/produce.log"
  }
  [ -n "${LIVE_RATE:-}" ] || stream ev
  for i in "${!configs[@]}"; do
    c=${configs[$i]} n=${configs[$i]%%:*} interval=${configs[$i]##*:}
    model="c$i.model"
    [ "$interval" = off ] && { model=-; interval=1000; }
    topic=ev rate=$RATE idle=4000
    [ -n "${LIVE_RATE:-}" ] && topic=e$i rate=$((LIVE_RATE / n)) idle=30000
    ipids=()
    for k in $(seq 1 "$n"); do
      "$bin" run --set "kafka.bootstrap.servers=$bs" --set "topic.events=$topic" --set topic.recommendations=recs \
          --set "group.id=g$run-$i" --set "topic.changelog=c$i.changelog" --set "topic.model=$model" \
          --set "model.sync.interval.ms=$interval" --set metrics.listen= --set "run.exit.idle.ms=$idle" --set "ingest.max.rate=$rate" \
          --set kafka.session.timeout.ms=6000 --set log.level=info --set "state.dir=$out/r$run-$i-$k" "${extra[@]}" \
          >"$out/r$run-$i-$k.log" 2>&1 &
      ipids+=($!)
    done
    if [ -n "${LIVE_RATE:-}" ]; then # every instance assigned, a few rebalances' time, then the stream
      for _ in $(seq 600); do
        [ "$(grep -l "partitions assigned" "$out/r$run-$i"-*.log 2>/dev/null | wc -l)" -ge "$n" ] && break; sleep 0.1
      done
      sleep 15
      stream "e$i"
    fi
    wait "${ipids[@]}" || { echo "$c: an instance failed"; tail -3 "$out/r$run-$i"-*.log; exit 1; }
    read -r h m s p < <(cat "$out/r$run-$i"-*.log |
        sed -n 's/.*msg="stopped".*clicks_scored=\([0-9]*\) click_hits=\([0-9]*\) clicks_ranked=\([0-9]*\) rank_hits=\([0-9]*\).*/\1 \2 \3 \4/p' |
        awk '{s += $1; h += $2; r += $3; k += $4} END {printf "%.4f %.4f %d %.4f\n", h / s, k / r, r, h / r}')
    echo "run $run, $n instance(s), sync ${configs[$i]##*:}: lists hr@10 $h (hits per click $p), model hr@10 $m over $s clicks"
    hr[$c]+="$h "
    mr[$c]+="$m "
    pr[$c]+="$p "
    rm -rf "$out/r$run-$i"-*/
  done
  kill "$broker_pid"; wait "$broker_pid" 2>/dev/null || true; broker_pid=""
done
# shellcheck disable=SC2086
base=$(median ${hr[${configs[0]}]}) mbase=$(median ${mr[${configs[0]}]}) pbase=$(median ${pr[${configs[0]}]})
for c in "${configs[@]}"; do
  # shellcheck disable=SC2086
  h=$(median ${hr[$c]}) m=$(median ${mr[$c]}) p=$(median ${pr[$c]})
  echo "median: ${c%%:*} instance(s), sync ${c##*:}: lists hr@10 $h ($(python3 -c "print(f'{$h / $base:.3f}')")x one instance)," \
       "lists hits per click $p ($(python3 -c "print(f'{$p / $pbase:.3f}')")x)," \
       "model hr@10 $m ($(python3 -c "print(f'{$m / $mbase:.3f}')")x)"
done
