#!/usr/bin/env bash
# Schemas from a registry, end to end, against tests/registry/registry_server.py
# (a small Confluent-compatible registry; skipped, with a message, without python3):
# - `driftrec run` with schema.registry.url registers our schemas under the
#   topic-name subjects and frames its lists with the ids the registry gave;
# - records written with another producer's schema (tests/cli/fixtures/
#   UserEvent-v2.avsc, encoded by write_events_v2.py, not by Avro C) under an
#   id driftrec never saw are fetched once, resolved and applied; an id the
#   registry does not know goes to the dead-letter topic (class schema);
# - while the registry is down, records with a new id wait
#   schema.registry.wait.ms and go to the dead-letter topic as retryable
#   (class registry, dr.retryable: true), nothing lost; once it is back,
#   `driftrec dlq replay` puts them back and a run applies them;
# - a producer framing every record with a new unknown id costs at most the
#   look-up budget, and nothing stalls.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || { echo "SKIP: python3 not found (the test registry needs it)"; exit 0; }
src=${DR_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
fixtures="$src/tests/cli/fixtures"
start_broker 2 ev ev.recommendations ev.dlq

# start_registry NAME [OPTION]...: sets $reg (its URL) and $reg_pid
start_registry() {
  python3 "$src/tests/registry/registry_server.py" --port 0 "${@:2}" >"$dir/$1.port" 2>"$dir/$1.log" &
  reg_pid=$!
  pids+=($reg_pid)
  for _ in $(seq 200); do [ -s "$dir/$1.port" ] && break; sleep 0.05; done
  [ -s "$dir/$1.port" ] || { echo "registry $1 did not start"; cat "$dir/$1.log"; exit 1; }
  reg="http://127.0.0.1:$(head -1 "$dir/$1.port")"
}
# produce_v2 ID N FIRST_USER: N records of the v2 layout framed with schema id ID
produce_v2() {
  rm -rf "$dir/rec" && python3 "$fixtures/write_events_v2.py" "$dir/rec" "$1" "$2" "$3"
  for f in "$dir"/rec/*.bin; do
    kcat -P -b "$bs" -t ev -H "trace=id$1" -k "$(( $3 + $(basename "$f" .bin | sed 's/^0*//;s/^$/0/') % 20 ))" "$f"
  done
}
run_args=(--set "kafka.bootstrap.servers=$bs" --set topic.events=ev --set topic.recommendations=ev.recommendations
          --set state.dir="$dir/state"
          --set metrics.listen= --set topic.changelog=- --set topic.model=- --set schema.registry.wait.ms=300
          --set schema.registry.timeout.ms=500)
# last_progress LOG KEY: KEY's value on the run's last progress line
last_progress() { { grep 'msg="progress"\|msg="stopped" consumed=' "$1" || true; } | tail -1 | sed -n "s/.* $2=\([0-9]*\).*/\1/p"; }

# another producer's newer schema, as its serializer would have registered it
sed 's/"doc": "Another producer/"doc": "Yet another producer/' "$fixtures/UserEvent-v2.avsc" >"$dir/v3.avsc"
start_registry r1 --preload "100:ev-value:$fixtures/UserEvent-v2.avsc"
produce_v2 100 40 1
produce_v2 999 5 1                      # an id no registry knows
# (a group per run: the embedded broker makes a new member of the same group
# wait out the session of the one that left; offsets come from state.dir)
"$DRIFTREC" run "${run_args[@]}" --set "schema.registry.url=$reg" --set run.exit.idle.ms=1500 \
    --set group.id=g1 >"$dir/run1.log" 2>&1 || { cat "$dir/run1.log"; exit 1; }
events=$(last_progress "$dir/run1.log" events) dlq=$(last_progress "$dir/run1.log" dlq)
[ "$events" = 40 ] && [ "$dlq" = 5 ] || { echo "run 1: events=$events dlq=$dlq (want 40, 5)"; cat "$dir/run1.log"; exit 1; }
fetched=$(curl -s "$reg/_test/requests" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(v for k,v in d.items() if "ids" in k))')
[ "$fetched" = 2 ] || { echo "schema fetches: $fetched (want 2: id 100 once, id 999 once)"; curl -s "$reg/_test/requests"; exit 1; }
for s in ev-value ev.recommendations-value; do
  curl -sf "$reg/subjects/$s/versions/latest" >"$dir/$s.json" || { echo "subject $s not registered"; exit 1; }
done
recs_id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$dir/ev.recommendations-value.json")
framed=$(kcat -C -b "$bs" -t ev.recommendations -c 1 -e -q -f '%s' 2>/dev/null | head -c 5 | od -An -tu1 | tr -s ' ')
want=$(python3 -c "import sys; i=$recs_id; print(' 0 %d %d %d %d' % (i>>24&255, i>>16&255, i>>8&255, i&255))")
[ "$framed" = "$want" ] || { echo "lists framed as '$framed', want '$want' (registry id $recs_id)"; exit 1; }
classes=$(kcat -C -b "$bs" -t ev.dlq -e -q -f '%h\n' 2>/dev/null | grep -o 'dr.reason.class=[a-z]*' | sort | uniq -c | tr -s ' ')
[ "$classes" = " 5 dr.reason.class=schema" ] || { echo "dead letters: $classes"; exit 1; }
traced=$(kcat -C -b "$bs" -t ev.dlq -e -q -f '%h\n' 2>/dev/null | grep -c 'trace=id999' || true)
[ "$traced" = 5 ] || { echo "dead letters lost the records' own headers ($traced of 5 kept trace=id999)"; exit 1; }
echo "run 1: 40 events of a schema fetched by id applied, 5 of an unknown id dead-lettered (schema, own headers kept);" \
     "2 fetches; subjects registered; lists framed with id $recs_id"

# the registry goes down while driftrec runs
"$DRIFTREC" run "${run_args[@]}" --set "schema.registry.url=$reg" --set group.id=g2 >"$dir/run2.log" 2>&1 &
run_pid=$!
pids+=($run_pid)
for _ in $(seq 300); do grep -q "partitions assigned" "$dir/run2.log" && break; sleep 0.05; done
kill "$reg_pid"; wait "$reg_pid" 2>/dev/null || true
produce_v2 102 10 30
for _ in $(seq 200); do
  n=$(kcat -C -b "$bs" -t ev.dlq -e -q -f '%h\n' 2>/dev/null | grep 'trace=id102' | grep -c 'dr.reason.class=registry' || true)
  [ "$n" -ge 10 ] && break; sleep 0.1
done
[ "$n" = 10 ] || { echo "registry down: $n retryable dead letters (want 10)"; cat "$dir/run2.log"; exit 1; }
kcat -C -b "$bs" -t ev.dlq -e -q -f '%h\n' 2>/dev/null | grep 'trace=id102' | grep 'dr.reason.class=registry' | grep -q 'dr.retryable=true' \
  || { echo "retryable dead letters lack dr.retryable=true"; exit 1; }
kill -TERM "$run_pid"; wait "$run_pid" 2>/dev/null || true
echo "registry down: 10 records of a new id dead-lettered as retryable (class registry), the run went on"

# back up (a new registry process, as after a restore): replay, then apply
start_registry r2 --preload "100:ev-value:$fixtures/UserEvent-v2.avsc" --preload "102:ev-value:$dir/v3.avsc"
"$DRIFTREC" dlq replay --bootstrap "$bs" --set topic.events=ev >"$dir/replay.log" 2>&1 || { cat "$dir/replay.log"; exit 1; }
grep -q "replayed=10" "$dir/replay.log" || { echo "dlq replay:"; cat "$dir/replay.log"; exit 1; }
"$DRIFTREC" run "${run_args[@]}" --set "schema.registry.url=$reg" --set run.exit.idle.ms=1500 \
    --set group.id=g3 >"$dir/run3.log" 2>&1 || { cat "$dir/run3.log"; exit 1; }
events=$(last_progress "$dir/run3.log" events) dlq=$(last_progress "$dir/run3.log" dlq)
[ "$events" = 10 ] && [ "$dlq" = 0 ] || { echo "run 3: events=$events dlq=$dlq (want 10, 0)"; cat "$dir/run3.log"; exit 1; }
echo "registry back: dlq replay put the 10 back, and they were applied (none dead-lettered again)"
# a producer framing every record with a new unknown id: a look-up budget
# (DR_SCHEMA_LOOKUP_BURST, then DR_SCHEMA_LOOKUPS_PER_S) keeps the partition
# flowing; what is over it is dead-lettered as retryable without a request
base=$(curl -s "$reg/_test/requests" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(v for k,v in d.items() if "ids" in k))')
produce_v2 5000-5299 300 1
"$DRIFTREC" run "${run_args[@]}" --set "schema.registry.url=$reg" --set run.exit.idle.ms=1500 \
    --set group.id=g4 >"$dir/run1b.log" 2>&1 || { cat "$dir/run1b.log"; exit 1; }
dlq=$(last_progress "$dir/run1b.log" dlq)
[ "$dlq" = 300 ] || { echo "ever new ids: $dlq of 300 dead-lettered"; exit 1; }
fetches=$(curl -s "$reg/_test/requests" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(v for k,v in d.items() if "ids" in k))')
[ "$((fetches - base))" -le 100 ] || { echo "ever new ids: $((fetches - base)) look-ups for 300 records (budget: 20, then 20 a second)"; exit 1; }
over=$(kcat -C -b "$bs" -t ev.dlq -e -q -f '%h\n' 2>/dev/null | grep 'trace=id5000-5299' | grep -c 'dr.reason.class=registry' || true)
[ "$over" -ge 200 ] || { echo "ever new ids: only $over dead-lettered as over the budget"; exit 1; }
echo "ever new schema ids: 300 records dead-lettered with $((fetches - base)) look-ups ($over over the budget, retryable)"

echo "4 passed, 0 failed"
