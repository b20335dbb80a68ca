#!/usr/bin/env bash
# Operations endpoint and shutdown: `driftrec run` serves /metrics
# (Prometheus text), /healthz and /readyz on 127.0.0.1; the scraped counters
# match what was produced; SIGTERM finishes, commits and exits 0 quickly.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
start_broker 3 ev recs
produce "$bs" ev 20000 500 300
"$DRIFTREC" run --set "kafka.bootstrap.servers=$bs" --set topic.events=ev --set topic.recommendations=recs \
    --set "state.dir=$dir/state" --set metrics.listen=127.0.0.1:0 --set model.sync.interval.ms=600000 --set state.commit.interval.ms=50 --set ingest.max.rate=5000 \
    --set metrics.ready.max.lag=0 >"$dir/run.log" 2>&1 &
run=$!
pids+=("$run")
port=$(metrics_port "$dir/run.log")
url="http://127.0.0.1:$port"
[ "$(curl -sf "$url/healthz")" = ok ]
# wait until everything is consumed, then the scrape must say so
for _ in $(seq 300); do
  n=$(curl -sf "$url/metrics" | awk '$1 == "driftrec_records_consumed_total" {print $2}')
  [ "${n:-0}" = "20000" ] && break; sleep 0.1
done
curl -sf "$url/metrics" >"$dir/metrics.txt"
grep -q '^driftrec_records_consumed_total 20000$' "$dir/metrics.txt" || { echo "consumed:"; grep consumed "$dir/metrics.txt"; exit 1; }
[ -n "${DR_KEEP_METRICS:-}" ] && cp "$dir/metrics.txt" "$DR_KEEP_METRICS"
grep -q '^driftrec_events_learned_total 20000$' "$dir/metrics.txt"
grep -q '^driftrec_assigned_partitions 3$' "$dir/metrics.txt"
grep -q '^driftrec_freshness_seconds_bucket{le="+Inf"}' "$dir/metrics.txt"
grep -q '^driftrec_partition_consumed_total{partition="2"}' "$dir/metrics.txt"
grep -q '^# TYPE driftrec_freshness_seconds histogram$' "$dir/metrics.txt"
grep -q '^driftrec_learn_batch_seconds_count [1-9]' "$dir/metrics.txt"
grep -q '^driftrec_withdraw_queued_users 0$' "$dir/metrics.txt"
grep -q '^driftrec_withdraw_scanning 0$' "$dir/metrics.txt"
grep -q '^driftrec_withdraw_unchecked_partitions 0$' "$dir/metrics.txt"
grep -q '^driftrec_withdraw_rechecked_partitions_total 0$' "$dir/metrics.txt"
# a small catalog: the full scan serves, nothing is audited (emit.retrieval.audit.every)
grep -q '^driftrec_retrieval_audited_lists_total 0$' "$dir/metrics.txt"
grep -q '^driftrec_retrieval_audit_slots_total 0$' "$dir/metrics.txt"
# cuts by what followed them, and the global detector's by direction
for reason in readapted improving control small; do
  grep -q "^driftrec_drift_cuts_total{reason=\"$reason\"} [0-9]" "$dir/metrics.txt"
done
for direction in worse small improving; do
  grep -q "^driftrec_global_drift_cuts_total{direction=\"$direction\"} [0-9]" "$dir/metrics.txt"
done
for _ in $(seq 50); do curl -sf "$url/readyz" >/dev/null && break; sleep 0.1; done
[[ "$(curl -sf "$url/readyz")" == ready* ]]
[ "$(curl -s -o /dev/null -w '%{http_code}' "$url/nope")" = 404 ]
[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$url/metrics")" = 400 ]
# a real Prometheus server (127.0.0.1) scrapes the endpoint; the value it
# stored must be what was produced. The alerting rules must load.
if command -v prometheus >/dev/null; then
  promtool check rules "$DR_SOURCE_DIR/ops/prometheus/alerts.yml" >/dev/null
  pport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  cat >"$dir/prometheus.yml" <<CFG
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: ["$DR_SOURCE_DIR/ops/prometheus/alerts.yml"]
scrape_configs:
  - job_name: driftrec
    static_configs: [{targets: ["127.0.0.1:$port"]}]
CFG
  prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/tsdb" \
      --web.listen-address="127.0.0.1:$pport" >"$dir/prometheus.log" 2>&1 &
  pids+=($!)
  got=""
  for _ in $(seq 300); do
    got=$(curl -sf "http://127.0.0.1:$pport/api/v1/query?query=driftrec_records_consumed_total" 2>/dev/null |
          python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' 2>/dev/null || true)
    [ "$got" = "20000" ] && break; sleep 0.1
  done
  [ "$got" = "20000" ] || { echo "Prometheus scraped '$got'"; tail -5 "$dir/prometheus.log"; exit 1; }
  echo "Prometheus scraped driftrec_records_consumed_total = $got"
else
  echo "skipped the Prometheus part: prometheus not installed (ops/bootstrap.sh installs it)"
fi

# erasure: the request (a null value keyed by the user) removes the user's
# state with the next commit (here the shutdown's) and publishes a tombstone
read -r victim victim_events < <("$DRIFTREC" inspect --state-dir "$dir/state" users | head -1)
"$DRIFTREC" erase --user "$victim" --set "kafka.bootstrap.servers=$bs" --set topic.events=ev >/dev/null
erased() { local m; m=$(curl -sf "$url/metrics") && grep -qx 'driftrec_erasures_total 1' <<<"$m"; }
for _ in $(seq 100); do erased && break; sleep 0.1; done
erased || { echo "the erase request was not applied"; exit 1; }
# an erase request is not an event (issue 16: it was counted as one)
m=$(curl -sf "$url/metrics")
grep -qx 'driftrec_events_learned_total 20000' <<<"$m" || { echo "events after the erase request: $(grep '^driftrec_events_learned_total' <<<"$m")"; exit 1; }
grep -qx 'driftrec_erase_requests_total 1' <<<"$m" || { echo "erase requests: $(grep '^driftrec_erase_requests_total' <<<"$m")"; exit 1; }

# item changes not shared yet (the sync interval is 10 minutes here, commits
# every 50 ms, consumption capped so that it spans 4 s of them: only the
# first commit with events published) are shared at the stop, not kept for good
pending=$(curl -sf "$url/metrics" | awk '$1 == "driftrec_model_items_pending" {print $2}')
[ "${pending:-0}" -gt 0 ] || { echo "no item changes pending before the stop: $pending"; exit 1; }
before=$(kcat -C -b "$bs" -t ev.model -e -q -f '.' 2>/dev/null | wc -c)
# SIGTERM: commit and exit 0 within the shutdown bound
t0=$(date +%s%N)
kill -TERM "$run"
rc=0; wait "$run" || rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$rc" -eq 0 ] || { echo "exit $rc after SIGTERM"; tail "$dir/run.log"; exit 1; }
[ "$ms" -lt 10000 ] || { echo "shutdown took $ms ms"; exit 1; }
after=$(kcat -C -b "$bs" -t ev.model -e -q -f '.' 2>/dev/null | wc -c)
[ "$after" -gt "$before" ] || { echo "the $pending pending item changes were not shared at the stop ($before model messages before, $after after)"; exit 1; }
total=$("$DRIFTREC" inspect --state-dir "$dir/state" users | awk '{s += $2} END {print s}')
[ "$total" -eq $((20000 - victim_events)) ] || { echo "stored $total of $((20000 - victim_events)) events after SIGTERM"; exit 1; }
out=$("$DRIFTREC" inspect --state-dir "$dir/state" user "$victim" 2>&1) || true
grep -q "no stored state" <<<"$out" || { echo "user $victim still in the state after the erase"; exit 1; }
lists=$(kcat -C -b "$bs" -t recs -e -q -f '%k %S\n' 2>/dev/null)
grep -qx "$victim -1" <<<"$lists" || { echo "no tombstone for $victim"; exit 1; }
echo "erased user $victim ($victim_events events): state gone, tombstone published"
echo "scraped 20000 records; SIGTERM to exit 0 in $ms ms with every event stored"
echo "1 passed, 0 failed"
