#!/usr/bin/env bash
# Overload: 300k events wait in the topic while the pipeline may hold only
# 100 users owed a list, so it must pause and resume its partitions over and
# over. Nothing may be dropped (per-user counters sum to 300k), the lag is
# reported while it works, and memory stays bounded: the peak RSS is printed
# and must stay under 1 GiB.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
start_broker 4 ev recs
produce "$bs" ev 300000 20000 2000
"$DRIFTREC" run --set "kafka.bootstrap.servers=$bs" --set topic.events=ev --set topic.recommendations=recs \
    --set "state.dir=$dir/state" --set metrics.listen=127.0.0.1:0 \
    --set ingest.max.dirty.users=100 --set emit.interval.ms=200 >"$dir/run.log" 2>&1 &
run=$!
pids+=("$run")
port=$(metrics_port "$dir/run.log")
max_lag=0
for _ in $(seq 1200); do
  lag=$(metric "$port" driftrec_consumer_lag || echo 0); lag=${lag%%.*}
  [ "${lag:-0}" -gt "$max_lag" ] && max_lag=$lag
  [ "$(metric "$port" driftrec_records_consumed_total)" = "300000" ] && break
  sleep 0.1
done
[ "$(metric "$port" driftrec_records_consumed_total)" = "300000" ] || { echo "not everything was consumed"; exit 1; }
pauses=$(metric "$port" driftrec_pauses_total)
peak=$(metric "$port" driftrec_process_peak_resident_bytes)
kill -TERM "$run"; wait "$run"
total=$("$DRIFTREC" inspect --state-dir "$dir/state" users | awk '{s += $2} END {print s}')
[ "$total" -eq 300000 ] || { echo "stored $total of 300000 events"; exit 1; }
[ "${pauses%%.*}" -gt 0 ] || { echo "consumption was never paused"; exit 1; }
[ "${max_lag}" -gt 0 ] || { echo "no lag was ever reported"; exit 1; }
peak_mb=$(( ${peak%%.*} / 1048576 ))
[ "$peak_mb" -lt 1024 ] || { echo "peak RSS $peak_mb MiB"; exit 1; }
echo "overload: $pauses pauses, largest lag seen $max_lag, peak RSS $peak_mb MiB, 300000 events stored"
echo "1 passed, 0 failed"
