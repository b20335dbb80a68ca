#!/usr/bin/env bash
# bench/restart.sh - restart time to the first published list (issue 18,
# benchmark 4): one instance learns USERS users and stops; an event arrives
# while it is down; then it starts again on its state, and the time from the
# start of the process to that event's list at an independent consumer
# (kcat, waiting at the end of the recommendations topic) is taken, for:
#   group   - the consumer group assigns the partitions (the default);
#             kafka.session.timeout.ms as set (SESSION_MS), since the
#             embedded broker holds a group "joining" that long after its
#             last member leaves (docs/EMBEDDED-BROKER.md);
#   static  - ingest.partitions=all: no group join.
# Medians over RUNS restarts of each kind, alternated.
#
#   bench/restart.sh [RUNS]     (default 3)
# Environment: USERS (100000), EVENTS (5 per user), PARTITIONS (16), DIM (32),
#              SESSION_MS (6000), DRIFTREC (build/driftrec), KEEP (1: keep the
#              logs and the state, path printed at the end). The embedded
#              broker keeps ~5 MiB per partition: raise PARTITIONS with USERS.
#              STATE (a store bench/state.sh kept with KEEP_STATE: restarts on
#              a copy of it instead of learning a stream first; its users are
#              in partition 0, so PARTITIONS must be 1, and USERS should be
#              the population it holds, so that the waiting event's user is
#              a stored one).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
USERS=${USERS:-100000} PARTITIONS=${PARTITIONS:-16} DIM=${DIM:-32} SESSION_MS=${SESSION_MS:-6000}
EVENTS=${EVENTS:-$((USERS * 5))}
bin=${DRIFTREC:-build/driftrec}
out=$(mktemp -d /tmp/driftrec-restart-XXXXXX)
broker_pid=""
cleanup() { [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null; wait 2>/dev/null; [ -n "${KEEP:-}" ] && echo "kept: $out" || rm -rf "$out"; }
trap cleanup EXIT

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "scenario: $USERS users, $EVENTS events, $PARTITIONS partitions, d=$DIM, embedded broker, session timeout $SESSION_MS ms"
"$bin" broker --partitions "$PARTITIONS" --topic ev --topic recs > "$out/broker.txt" 2>"$out/broker.log" &
broker_pid=$!
for _ in $(seq 50); do [ -s "$out/broker.txt" ] && break; sleep 0.1; done
bs=$(head -1 "$out/broker.txt")
[ -n "${STATE:-}" ] ||
  "$bin" demo --bootstrap "$bs" --produce-only --scenario openloop --events "$EVENTS" --users "$USERS" --items 5000 \
      --partitions "$PARTITIONS" --set topic.events=ev --quiet 2>"$out/produce.log"
common=(--set "kafka.bootstrap.servers=$bs" --set topic.events=ev --set topic.recommendations=recs
        --set topic.changelog=- --set topic.model=- --set topic.catalog=
        --set group.id=g --set learner.dim="$DIM" --set metrics.listen= --set log.level=info
        --set "kafka.session.timeout.ms=$SESSION_MS" --set "state.dir=$out/state")
if [ -n "${STATE:-}" ]; then
  [ "$PARTITIONS" = 1 ] || { echo "STATE needs PARTITIONS=1 (its users are in partition 0)" >&2; exit 2; }
  cp -r "$STATE" "$out/state"
  echo "state: $(du -sm "$out/state" | cut -f1) MiB copied from $STATE"
else
  t0=$(date +%s.%N)
  "$bin" run "${common[@]}" --set run.exit.idle.ms=2000 >"$out/learn.log" 2>&1
  echo "learned the stream in $(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s;" \
       "state: $(du -sm "$out/state" | cut -f1) MiB, $("$bin" inspect --state-dir "$out/state" users | wc -l) users"
fi

seed=100
restart() { # kind extra-args...: prints seconds from the start to the waiting event's list
  local kind=$1; shift
  rm -f "$out/first"
  # an event waits for the stopped instance; the consumer waits at the end of the lists
  seed=$((seed + 1))
  "$bin" demo --bootstrap "$bs" --produce-only --scenario openloop --events 1 --users "$USERS" --items 5000 \
      --partitions "$PARTITIONS" --seed "$seed" --set topic.events=ev --set topic.catalog= --quiet 2>>"$out/produce.log"
  # fetch.wait.max.ms: the embedded broker holds an empty fetch that long even when a record
  # arrives (docs/EMBEDDED-BROKER.md); at kcat's default of 500 ms the wait was timed too
  kcat -C -b "$bs" -X fetch.wait.max.ms=10 -t recs -o end -c 1 -q -f '%k\n' > "$out/first" 2>/dev/null &
  local kc=$!
  sleep 1
  local start
  start=$(date +%s.%N)
  echo "$start" > "$out/$kind.start"
  "$bin" run "${common[@]}" "$@" >"$out/$kind.log" 2>&1 &
  local run=$!
  local ok=0
  for _ in $(seq 1200); do kill -0 "$kc" 2>/dev/null || { ok=1; break; }; sleep 0.02; done
  local end
  end=$(date +%s.%N)
  kill -TERM "$run"; wait "$run" || true
  kill "$kc" 2>/dev/null || true; wait "$kc" 2>/dev/null || true
  if [ "$ok" = 1 ] && [ -s "$out/first" ]; then python3 -c "print(round($end - $start, 2))"; else echo 60; fi
  # on a kept store, the list's user had events before this one: a stored user, read from disk
  if [ -n "${STATE:-}" ] && [ -s "$out/first" ]; then
    echo "  user $(head -1 "$out/first"): $("$bin" inspect --state-dir "$out/state" --json user "$(head -1 "$out/first")" |
         python3 -c 'import json,sys; print(json.load(sys.stdin)["events_applied"])') events applied" >&2
  fi
  # the embedded broker holds the group "joining" after its last member left
  [ "$kind" = group ] && sleep "$(python3 -c "print($SESSION_MS / 1000 + 1)")" || true
}
g=() s=()
for run in $(seq 1 "$runs"); do
  a=$(restart group) b=$(restart static --set ingest.partitions=all)
  echo "run $run: start to the new event's list: group $a s, static $b s"
  g+=("$a") s+=("$b")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
echo "median start to first list: group $(median "${g[@]}") s, static (ingest.partitions=all) $(median "${s[@]}") s"
