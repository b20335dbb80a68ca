#!/usr/bin/env bash
# A broker address where nothing answers (a typo, a broker not started yet).
# The one-shot commands (demo --bootstrap in both scenarios, load, topics
# create, lists, replay --topic, erase) stop within 10-17 s with a message
# that names the address and what was not done, exit 1, and produce nothing.
# run, a service, keeps trying (the broker may come up later) but says at
# start, naming the address, that nobody answers. Before, the demo printed
# only librdkafka's connection errors while its records waited out their
# delivery timeout (over a minute for 1,000 events; librdkafka's default
# timeout is 5 minutes), load gave up after 70 s saying that not every
# record was delivered, topics create blamed the embedded broker's missing
# Admin API, and erase took 30 s.
set -euo pipefail
DRIFTREC=${DRIFTREC:?DRIFTREC must point at the driftrec binary}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
nowhere=127.0.0.1:1 # nothing listens on port 1 here: connections are refused at once

# expect_refusal NAME WHAT CMD...: CMD exits 1 within 40 s, saying that
# nobody answered at $nowhere and WHAT
expect_refusal() {
  local name=$1 what=$2 rc=0 t0=$SECONDS
  shift 2
  timeout 40 "$@" >"$dir/$name.out" 2>"$dir/$name.err" || rc=$?
  if [ "$rc" -ne 1 ] || ! grep -q "no broker answered at $nowhere.*: $what" "$dir/$name.err"; then
    echo "$name: exit $rc after $((SECONDS - t0)) s, expected 1 with the broker named"
    grep -v 'mod=kafka\|^%' "$dir/$name.err" | tail -5
    exit 1
  fi
  echo "$name: refused after $((SECONDS - t0)) s"
}

# the seven at once (each waits ~10-17 s for nobody); each in its own subshell
printf 'userId,movieId,rating,timestamp\n1,10,4.0,964982703\n' >"$dir/ratings.csv"
jobs_=()
expect_refusal demo-openloop "nothing was produced" "$DRIFTREC" demo --scenario openloop --quiet --events 1000 \
  --bootstrap "$nowhere" --state-dir "$dir/state" & jobs_+=($!)
expect_refusal demo-feed "nothing was produced" "$DRIFTREC" demo --quiet --bootstrap "$nowhere" \
  --state-dir "$dir/feed-state" & jobs_+=($!)
expect_refusal load "nothing was produced" "$DRIFTREC" load --format movielens "$dir/ratings.csv" --topic ev \
  --bootstrap "$nowhere" & jobs_+=($!)
expect_refusal topics "nothing was created" "$DRIFTREC" topics create --set "kafka.bootstrap.servers=$nowhere" & jobs_+=($!)
expect_refusal lists "nothing was read" "$DRIFTREC" lists \
  --set "kafka.bootstrap.servers=$nowhere" & jobs_+=($!)
expect_refusal replay "nothing was read" "$DRIFTREC" replay --topic ev --bootstrap "$nowhere" & jobs_+=($!)
expect_refusal erase "nothing was sent" "$DRIFTREC" erase --user 7 --set "kafka.bootstrap.servers=$nowhere" & jobs_+=($!)
# the service: still running after 15 s, having named the address once
( rc=0
  timeout 15 "$DRIFTREC" run --set "kafka.bootstrap.servers=$nowhere" --set "state.dir=$dir/run-state" \
    --set metrics.listen= >"$dir/run.log" 2>&1 || rc=$?
  [ "$rc" -eq 124 ] || { echo "run: exit $rc before its 15 s, expected it to keep trying"; tail -3 "$dir/run.log"; exit 1; }
  grep -q "no broker answered at $nowhere yet" "$dir/run.log" ||
    { echo "run: nothing said about $nowhere"; grep -v mod=kafka "$dir/run.log" | tail -3; exit 1; }
  echo "run: kept trying, the address named" ) & jobs_+=($!)
for j in "${jobs_[@]}"; do wait "$j"; done
echo "ok"
