#!/usr/bin/env bash
# Idle clients cannot exhaust the metrics endpoint: `driftrec run` under a
# 200-descriptor limit (`ulimit -n 200`), with 300 connections opened to it
# that stay idle or send half a request, still answers /healthz with 200 and
# keeps its descriptors bounded (metrics.max.connections, at most a quarter
# of the limit: the oldest is closed for each new one); the ones left are
# closed after metrics.timeout.ms (default 5 s); and SIGTERM with idle
# connections open exits at once rather than waiting for them.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
# the packaged unit sets a descriptor limit of its own (systemd's default
# soft limit, 1024, is the one RocksDB would run out of first)
grep -q '^LimitNOFILE=[1-9][0-9]*$' "$DR_SOURCE_DIR/ops/driftrec.service" || { echo "ops/driftrec.service sets no LimitNOFILE="; exit 1; }
n_conns=300
start_broker 1 ev recs
(ulimit -n 200 && exec "$DRIFTREC" run --set "kafka.bootstrap.servers=$bs" --set topic.events=ev \
    --set topic.recommendations=recs --set "state.dir=$dir/state" --set metrics.listen=127.0.0.1:0) \
    >"$dir/run.log" 2>&1 &
run=$!
pids+=("$run")
port=$(metrics_port "$dir/run.log")
healthz() { curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://127.0.0.1:$port/healthz" || true; }
open_fds() { ls "/proc/$run/fd" | wc -l; }
[ "$(healthz)" = 200 ] || { echo "no /healthz before the flood"; tail -5 "$dir/run.log"; exit 1; }
# the baseline once every client of run (consumer, producer, model reader) is connected
for _ in $(seq 200); do grep -q "partitions assigned" "$dir/run.log" && break; sleep 0.05; done
sleep 1
base=$(open_fds)

# Opens $1 connections (in this shell, so that they stay open): odd ones
# send nothing, even ones a request line and a header but no blank line.
conns=()
open_conns() {
  local fd
  # a connection the server already closed must not kill this shell (SIGPIPE);
  # what it did to the connections is checked below
  trap '' PIPE
  for i in $(seq "$1"); do
    exec {fd}<>"/dev/tcp/127.0.0.1/$port" || { echo "connection $i of $1 failed"; exit 1; }
    if (( i % 2 == 0 )); then printf 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n' >&"$fd" 2>/dev/null || true; fi
    conns+=("$fd")
  done
  trap - PIPE
}
t0=$(date +%s%N)
open_conns "$n_conns"
# while they are open (on our side), health probes are answered at once
for probe in 1 2 3; do
  code=$(healthz)
  [ "$code" = 200 ] || { echo "/healthz answered '$code' with $n_conns idle connections open (probe $probe)"; tail -5 "$dir/run.log"; exit 1; }
done
held=$(( $(open_fds) - base ))
kill -0 "$run" 2>/dev/null || { echo "run died under the flood"; tail -5 "$dir/run.log"; exit 1; }
# the cap is 200 / 4 = 50 connections; a little slack for RocksDB and librdkafka
[ "$held" -le 55 ] || { echo "run holds $held more descriptors with $n_conns connections open (cap: 50)"; exit 1; }
evicted=$(metric "$port" driftrec_metrics_connections_evicted_total)
[ "${evicted%.*}" -ge $((n_conns - 50)) ] || { echo "evicted $evicted of $n_conns connections"; exit 1; }
echo "$n_conns connections open: /healthz 200, run holds $held more descriptors, $evicted evicted"

# every connection is closed by the server (EOF, no response) by the deadline
for fd in "${conns[@]}"; do
  # (a reset, for one evicted before its request was read, reads as EOF too)
  rc=0; read -r -t 20 -u "$fd" line 2>/dev/null || rc=$?
  [ "$rc" -eq 1 ] || { echo "connection on fd $fd: read status $rc (1 is EOF; >128 still open after 20 s), '${line:-}'"; exit 1; }
  exec {fd}<&-
done
closed_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$closed_ms" -ge 4000 ] || { echo "the last connections were closed after $closed_ms ms, before metrics.timeout.ms"; exit 1; }
timed_out=$(metric "$port" driftrec_metrics_connections_timed_out_total)
[ "${timed_out%.*}" -ge 1 ] || { echo "no connection counted as timed out"; exit 1; }
[ "$(( $(open_fds) - base ))" -le 3 ] || { echo "run holds $(( $(open_fds) - base )) more descriptors after the timeout"; ls -l "/proc/$run/fd"; exit 1; }
[ "$(healthz)" = 200 ]
echo "all $n_conns closed by the server within $closed_ms ms ($timed_out timed out); descriptors back to $base"

# SIGTERM with idle connections open: the stop closes them, no waiting
conns=()
open_conns 10
# (an exited child stays a zombie until waited for, and kill -0 reaches zombies)
running() { [ -e "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
t1=$(date +%s%N)
kill -TERM "$run"
for _ in $(seq 80); do running "$run" || break; sleep 0.05; done
ms=$(( ($(date +%s%N) - t1) / 1000000 ))
if running "$run"; then echo "still running $ms ms after SIGTERM with idle connections open"; exit 1; fi
rc=0; wait "$run" || rc=$?
[ "$rc" -eq 0 ] || { echo "exit $rc after SIGTERM"; tail -5 "$dir/run.log"; exit 1; }
echo "SIGTERM with 10 idle connections open: exit 0 in $ms ms"
echo "1 passed, 0 failed"
