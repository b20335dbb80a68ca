#!/usr/bin/env bash
# bench/restore.sh - what moving a partition's users costs: one instance
# learns USERS users over PARTITIONS partitions and stops (one commit at the
# end, so the changelog holds one record per user); then
#   1. the same instance restarts on its own state (it reads only what
#      follows its stored changelog position: nothing),
#   2. a fresh instance with an empty state directory takes every partition
#      and restores it from the changelog alone,
# and prints the changelog's bytes per user and the restore rate, scaled to
# a million users. Medians over RUNS.
#
#   bench/restore.sh [RUNS]     (default 3)
# Environment: USERS (100000), EVENTS (20 per user), PARTITIONS (64), DIM (32),
#              DRIFTREC (build/driftrec). The stream draws a user per session
#              of ~20 events, so 20 events per user reach ~63% of the users
#              (2 per user, the old default, reached ~10%: the restore rates
#              measured then came from a tenth of USERS). The embedded broker
#              keeps ~5 MiB per partition: keep the users reached × ~2 KB (and
#              EVENTS × ~60 bytes) under PARTITIONS × 5 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
USERS=${USERS:-100000} PARTITIONS=${PARTITIONS:-64} DIM=${DIM:-32}
EVENTS=${EVENTS:-$((USERS * 20))}
bin=${DRIFTREC:-build/driftrec}
out=$(mktemp -d /tmp/driftrec-restore-XXXXXX)
broker_pid=""
cleanup() { [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null; wait 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$out"; }
trap cleanup EXIT

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "scenario: $USERS users, $EVENTS events, $PARTITIONS partitions, d=$DIM, embedded broker"
sum_log() { # log field: sum of field=VALUE over the "partition restored" lines
  { grep "partition restored from the changelog" "$1" || true; } | sed -n "s/.* $2=\([0-9.]*\).*/\1/p" | awk '{s += $1} END {print s + 0}'
}
first_list_s() { # log: seconds from "running" to the first commit with lists, roughly: to "partitions assigned"
  python3 - "$1" <<'EOF'
import re, sys, datetime
ts = lambda l: datetime.datetime.strptime(re.search(r"ts=(\S+)Z", l).group(1), "%Y-%m-%dT%H:%M:%S.%f")
lines = open(sys.argv[1]).read().splitlines()
start = next(ts(l) for l in lines if 'msg="running"' in l)
done = [ts(l) for l in lines if 'msg="partitions assigned"' in l]
print(round((done[-1] - start).total_seconds(), 2) if done else -1)
EOF
}
rates=() restarts=() per_user=() assign=()
for run in $(seq 1 "$runs"); do
  "$bin" broker --partitions "$PARTITIONS" --topic ev --topic recs > "$out/broker.txt" 2>"$out/broker.log" &
  broker_pid=$!
  for _ in $(seq 50); do [ -s "$out/broker.txt" ] && break; sleep 0.1; done
  bs=$(head -1 "$out/broker.txt")
  "$bin" demo --bootstrap "$bs" --produce-only --scenario openloop --events "$EVENTS" --users "$USERS" --items 5000 \
      --set topic.events=ev --quiet 2>"$out/produce.log"
  common=(--set "kafka.bootstrap.servers=$bs" --set topic.events=ev --set topic.recommendations=recs
          --set group.id=g --set learner.dim="$DIM" --set metrics.listen= --set run.exit.idle.ms=2000
          --set state.commit.interval.ms=600000 --set log.level=info --set kafka.session.timeout.ms=6000)
  "$bin" run "${common[@]}" --set "state.dir=$out/a$run" >"$out/a$run.log" 2>&1
  "$bin" run "${common[@]}" --set "state.dir=$out/a$run" >"$out/a$run.restart.log" 2>&1
  "$bin" run "${common[@]}" --set "state.dir=$out/b$run" >"$out/b$run.log" 2>&1
  users=$(sum_log "$out/b$run.log" users) bytes=$(sum_log "$out/b$run.log" bytes) secs=$(sum_log "$out/b$run.log" seconds)
  restart_read=$(sum_log "$out/a$run.restart.log" records)
  stored=$("$bin" inspect --state-dir "$out/b$run" users | wc -l)
  rate=$(python3 -c "print(round($users / $secs))")
  bpu=$(python3 -c "print(round($bytes / $users))")
  echo "run $run: restored $users user records ($stored users stored) from $bytes bytes in $secs s: $rate users/s," \
       "$bpu changelog bytes/user; restart on own state read $restart_read records," \
       "assignment to consuming: fresh $(first_list_s "$out/b$run.log") s, restart $(first_list_s "$out/a$run.restart.log") s"
  rates+=("$rate"); per_user+=("$bpu")
  kill "$broker_pid"; wait "$broker_pid" 2>/dev/null || true; broker_pid=""
  rm -rf "$out"/a$run "$out"/b$run
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
r=$(median "${rates[@]}")
echo "median: $r users/s restored = $(python3 -c "print(round(1e6 / $r, 1))") s per million users (one instance, all partitions," \
     "read sequentially); $(median "${per_user[@]}") changelog bytes per user (d=$DIM)"
