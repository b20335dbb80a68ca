#!/usr/bin/env bash
# Restarts under other learner settings, on the same state directory: every
# stored record must load under the new configuration, nothing lost, and no
# run may crash (issue 12, defect 3). Three runs on one state directory, each
# to the end of the topic (run.exit.idle.ms), each after more events:
#  1. the defaults (learner.recent.items 32: users' rings fill up), without
#     a changelog (topic.changelog=-);
#  2. learner.recent.items=4, with drift settings that make the per-user
#     detectors cut often, so users stored with 32-entry rings re-adapt
#     (this read out of the ring and crashed, exit 139, before);
#     and only partition 0 of the two, assigned statically (ingest.partitions=0:
#     no group join); the store uncompressed above its last level, snappy in
#     it, and 1 MB memtables (many flushes);
#  3. learner.recent.items=64, drift.max.buckets=3 (the stored detectors have
#     5 buckets per row) and learner.cooc.neighbors=8 (items stored up to 256),
#     both partitions assigned statically (partition 1 resumes where run 1
#     left it); zstd in every level;
#  then learner.max.items below the items stored, a partition the topic
#  lacks, and (at the end) the events topic with twice the partitions: each
#  start is refused with a message naming the setting (exit 1, not a
#  crash), and the state is left as it was.
# Each run must exit 0 without a "corrupt user record", and at the end every
# user's applied-event counter must equal that of one uninterrupted run over
# the whole topic under the defaults (test_crash.sh's oracle), in the state
# directory. Then a start with a new changelog topic finds it behind the
# store and puts every stored user there: a fresh instance restores them all
# from it and has nothing to consume again (before, that start logged that it
# republished the users but wrote nothing, not even a marker: the fresh
# instance restored nobody and consumed the whole topic again).
set -euo pipefail
EVENTS=${EVENTS:-12000} USERS=${USERS:-150} ITEMS=${ITEMS:-300}
. "$(dirname "$0")/lib.sh"
start_broker 2 ev ev recs log2

common=(--set topic.events=ev --set topic.recommendations=recs
        --set kafka.fetch.wait.max.ms=10
        --set state.commit.interval.ms=200 --set metrics.listen= --set run.exit.idle.ms=1500
        --set log.level=info)

# more SEED: EVENTS more events of the demo's stream (another seed each time).
more() {
  "$DRIFTREC" demo --bootstrap "$bs" --produce-only --events "$EVENTS" --users "$USERS" --items "$ITEMS" \
      --seed "$1" --set topic.events=ev --quiet 2>"$dir/produce.log" || { cat "$dir/produce.log"; exit 1; }
}

# run_to_end NAME STATE [--set k=v]...: one run under a new group (only the
# offsets stored in STATE say where it resumes); it must exit 0.
run_to_end() {
  local name=$1 state=$2 rc=0
  shift 2
  timeout 120 "$DRIFTREC" run "${common[@]}" --set "kafka.bootstrap.servers=$bs" --set "state.dir=$state" \
      --set "group.id=$name" "$@" >"$dir/$name.log" 2>&1 || rc=$?
  [ "$rc" -eq 0 ] || { echo "run $name: exit $rc"; grep -E "ERROR|SUMMARY|error" "$dir/$name.log" | head -8; tail -5 "$dir/$name.log"; exit 1; }
  if grep -q "corrupt user record" "$dir/$name.log"; then
    echo "run $name: $(grep -c "corrupt user record" "$dir/$name.log") user records refused, those users restarted from the prior"
    exit 1
  fi
}

# cuts STATE USER...: the per-user detectors' cuts, summed over these users.
cuts() {
  local state=$1 s=0 c
  shift
  for u in "$@"; do
    c=$("$DRIFTREC" inspect --state-dir "$state" --json user "$u" | tr -d ' \n' | sed -n 's/.*"cuts":\([0-9]*\).*/\1/p')
    s=$((s + ${c:-0}))
  done
  echo "$s"
}

more 1
run_to_end defaults "$dir/state"
# the ten busiest users: their rings are full (32 entries) now
busiest=($(counters "$dir/state" | sort -k2,2nr | head -10 | awk '{print $1}'))
before=$(cuts "$dir/state" "${busiest[@]}")

more 2
run_to_end ring4 "$dir/state" --set learner.recent.items=4 --set drift.delta=0.5 --set drift.signal.scale=20 \
    --set drift.min.window=4 --set drift.min.sub.window=1 --set ingest.partitions=0 \
    --set state.compression=none --set state.compression.bottommost=snappy --set state.write.buffer.mb=1
grep -q 'msg="partitions assigned" count=1 protocol=static' "$dir/ring4.log" ||
  { echo "run ring4: partition 0 was not assigned statically"; exit 1; }
# the store's settings reached RocksDB (its OPTIONS file of this start)
opts=$(ls -t "$dir"/state/OPTIONS-* | head -1)
grep -q '^ *compression=kNoCompression' "$opts" && grep -q '^ *bottommost_compression=kSnappyCompression' "$opts" &&
  grep -q '^ *write_buffer_size=1048576' "$opts" ||
  { echo "run ring4: state.compression/state.write.buffer.mb not in $opts"; exit 1; }
after=$(cuts "$dir/state" "${busiest[@]}")
[ "$after" -gt "$before" ] || { echo "no drift detected in the run with 4 recent items: nothing re-adapted"; exit 1; }
recent=$("$DRIFTREC" inspect --state-dir "$dir/state" --json user "${busiest[0]}" | tr -d ' \n' |
         grep -o '"in_regime"' | grep -c . || true)
[ "$recent" -eq 4 ] || { echo "user ${busiest[0]}: $recent recent items stored, expected 4"; exit 1; }

more 3
run_to_end buckets3 "$dir/state" --set learner.recent.items=64 --set drift.max.buckets=3 --set learner.cooc.neighbors=8 \
    --set ingest.partitions=all --set state.compression=zstd
grep -q 'msg="partitions assigned" count=2 protocol=static' "$dir/buckets3.log" ||
  { echo "run buckets3: the partitions were not assigned statically"; exit 1; }

offsets_before=$("$DRIFTREC" inspect --state-dir "$dir/state" offsets)
rc=0
timeout 60 "$DRIFTREC" run "${common[@]}" --set "kafka.bootstrap.servers=$bs" --set "state.dir=$dir/state" \
    --set group.id=fewer-items --set learner.max.items=100 >"$dir/fewer-items.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && grep -q "more items than learner.max.items (100)" "$dir/fewer-items.log" ||
  { echo "a start with learner.max.items below the stored items: exit $rc"; tail -3 "$dir/fewer-items.log"; exit 1; }
[ "$("$DRIFTREC" inspect --state-dir "$dir/state" offsets)" = "$offsets_before" ] ||
  { echo "the refused start changed the stored offsets"; exit 1; }
# a start refused once its handles are open (ingest.partitions names a partition the topic
# lacks): a clear message and exit 1, the state untouched (it crashed, exit 139, before)
rc=0
timeout 60 "$DRIFTREC" run "${common[@]}" --set "kafka.bootstrap.servers=$bs" --set "state.dir=$dir/state" \
    --set group.id=no-such-partition --set ingest.partitions=0,5 >"$dir/no-such-partition.log" 2>&1 || rc=$?
[ "$rc" -eq 1 ] && grep -q "ingest.partitions names partition 5, but topic ev has 2" "$dir/no-such-partition.log" ||
  { echo "a start naming partition 5 of 2: exit $rc"; tail -3 "$dir/no-such-partition.log"; exit 1; }
[ "$("$DRIFTREC" inspect --state-dir "$dir/state" offsets)" = "$offsets_before" ] ||
  { echo "the start refused for partition 5 changed the stored offsets"; exit 1; }

run_to_end reference "$dir/ref"
counters "$dir/ref" >"$dir/ref.txt"
counters "$dir/state" >"$dir/state.txt"
total=$(awk '{s += $2} END {print s + 0}' "$dir/ref.txt")
[ "$total" -eq $((3 * EVENTS)) ] || { echo "reference applied $total of $((3 * EVENTS)) events"; exit 1; }
diff -q "$dir/ref.txt" "$dir/state.txt" >/dev/null ||
  { echo "counters differ from the reference run"; diff "$dir/ref.txt" "$dir/state.txt" | head; exit 1; }
# a changelog the state has never written to (a new topic.changelog): the next start finds it
# behind its store and puts every stored user there, so that an instance with an empty state
# directory restores them all and has nothing left to consume
run_to_end newlog "$dir/state" --set topic.changelog=log2.changelog
grep -q "users republished" "$dir/newlog.log" || { echo "the new changelog was not filled"; exit 1; }
run_to_end fresh "$dir/fresh" --set topic.changelog=log2.changelog
restored=$(sed -n 's/.*partition restored from the changelog.* users=\([0-9]*\).*/\1/p' "$dir/fresh.log" | awk '{s += $1} END {print s + 0}')
consumed=$(sed -n 's/.*msg="stopped" consumed=\([0-9]*\).*/\1/p' "$dir/fresh.log")
counters "$dir/fresh" >"$dir/fresh.txt"
[ "$restored" -eq "$(wc -l <"$dir/ref.txt")" ] && [ "$consumed" = 0 ] && diff -q "$dir/ref.txt" "$dir/fresh.txt" >/dev/null ||
  { echo "from the new changelog: $restored users restored, $consumed events consumed again"; diff "$dir/ref.txt" "$dir/fresh.txt" | head; exit 1; }
# the same from an instance given its partitions statically (ingest.partitions: no group, so no
# rebalance callback): it too must restore before it consumes, one partition at a time as moved
run_to_end fresh-static0 "$dir/fresh-static" --set topic.changelog=log2.changelog --set ingest.partitions=0
run_to_end fresh-static1 "$dir/fresh-static" --set topic.changelog=log2.changelog --set ingest.partitions=0-1
restored_static=$(cat "$dir/fresh-static0.log" "$dir/fresh-static1.log" |
  sed -n 's/.*partition restored from the changelog.* users=\([0-9]*\).*/\1/p' | awk '{s += $1} END {print s + 0}')
consumed_static=$(cat "$dir/fresh-static0.log" "$dir/fresh-static1.log" |
  sed -n 's/.*msg="stopped" consumed=\([0-9]*\).*/\1/p' | awk '{s += $1} END {print s + 0}')
counters "$dir/fresh-static" >"$dir/fresh-static.txt"
[ "$restored_static" -eq "$(wc -l <"$dir/ref.txt")" ] && [ "$consumed_static" = 0 ] &&
  diff -q "$dir/ref.txt" "$dir/fresh-static.txt" >/dev/null ||
  { echo "statically assigned, from the new changelog: $restored_static users restored, $consumed_static events consumed again"
    diff "$dir/ref.txt" "$dir/fresh-static.txt" | head; exit 1; }
# the events topic with another partition count (partitions added, or the topic made again): most
# users' events would land in another partition than their state, which would start again from the
# prior without a word; the start is refused, the state untouched; once accepted, the new count is
# the state's
offsets_before=$("$DRIFTREC" inspect --state-dir "$dir/state" offsets)
rm -f "$dir/ev.addr"
start_broker 4 ev
rc=0
timeout 60 "$DRIFTREC" run "${common[@]}" --set "kafka.bootstrap.servers=$bs" --set "state.dir=$dir/state" \
    --set group.id=more-partitions >"$dir/more-partitions.log" 2>&1 || rc=$?
[ "$rc" -eq 1 ] && grep -q "the events topic ev has 4 partitions, but this state (state.dir) was built when it had 2" \
    "$dir/more-partitions.log" ||
  { echo "a start on 4 partitions of a state built on 2: exit $rc"; tail -3 "$dir/more-partitions.log"; exit 1; }
[ "$("$DRIFTREC" inspect --state-dir "$dir/state" offsets)" = "$offsets_before" ] ||
  { echo "the start refused for the partition count changed the stored offsets"; exit 1; }
run_to_end accepted "$dir/state" --set state.partitions.changed=accept
grep -q "partition count changed, accepted.* was=2 now=4" "$dir/accepted.log" ||
  { echo "the accepted start did not say so"; exit 1; }
run_to_end after-accept "$dir/state"

echo "$(wc -l <"$dir/ref.txt") users, $total events applied exactly once across 3 runs under other settings" \
     "(group, one partition statically, both statically);" \
     "cuts of the 10 busiest users $before -> $after in the run with 4 recent items;" \
     "starts with learner.max.items=100, with a partition the topic lacks and on a topic with other partitions" \
     "refused, state untouched (the last accepted with state.partitions.changed);" \
     "a new changelog filled with all $restored users at the next start, restored from it by a group" \
     "member and by static assignments, partition 0 first"
echo "1 passed, 0 failed"
