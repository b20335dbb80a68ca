#!/usr/bin/env bash
# `driftrec dlq replay` puts dead-lettered records back: by default only
# those marked dr.retryable: true, with --reason-class (alias --class) or
# --all others; a dry run produces and commits nothing; the group's
# committed offsets make a second run replay nothing new; a record whose
# value was cut (dr.value.truncated) is never replayed; keys, values and
# foreign headers come back byte-identical, with dr.replayed.from =
# DLQ:PARTITION:OFFSET and dr.retries = the dead letter's + 1 (a malformed
# one counts as 0), and the key is partitioned as driftrec's own producers
# do; records without a source topic are skipped and counted; --target
# sends all to one topic; --limit leaves the rest for the next run; a
# record that cannot be produced stops the run (exit 1) with the group's
# offset at it, so the next run replays it and what follows, nothing twice;
# --from/--to replay exactly that range of every partition and commit
# nothing; a dead letter with dr.retries >= --max-retries (3) is not
# replayed (exhausted) unless --max-retries is raised; a missing target
# topic and an unreachable cluster fail cleanly and soon.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
start_broker 2 ev ev.dlq other rng rng.dlq rt rt.dlq
dlq() { "$DRIFTREC" dlq replay --bootstrap "$bs" --set topic.events=ev "$@"; }
fail() { echo "FAIL: $*"; exit 1; }

# dead KEY PARTITION VALUE_FILE [HEADER=VALUE]...: one hand-made dead letter
# on $dlq_topic
dlq_topic=ev.dlq
dead() {
  local key=$1 part=$2 file=$3 hs=()
  shift 3
  for h in "$@"; do hs+=(-H "$h"); done
  kcat -P -b "$bs" -t "$dlq_topic" -p "$part" -k "$key" "${hs[@]}" "$file" 2>/dev/null
}
val() { printf '%s' "$2" >"$dir/$1"; echo "$dir/$1"; }
printf 'head\0\n\001\377tail' >"$dir/binary"
src=dr.source.topic=ev
dead 101 0 "$(val v1 registry-1)" dr.reason.class=registry dr.retryable=true "$src" \
     dr.source.partition=1 dr.source.offset=40 "dr.reason=schema registry unreachable" app.trace=abc
dead 102 0 "$(val v2 schema-1)" dr.reason.class=schema "$src" "dr.reason=unknown schema id 9"
dead 103 0 "$dir/binary" dr.reason.class=registry dr.retryable=true "$src"
dead 104 0 "$(val v4 cut)" dr.reason.class=registry dr.retryable=true "$src" dr.value.truncated=70000
dead 105 1 "$(val v5 decode-1)" dr.reason.class=decode "$src"
dead 106 1 "$(val v6 nosource)" dr.reason.class=registry dr.retryable=true
dead 107 1 "$(val v7 schema-2)" dr.reason.class=schema "$src"
count() { kcat -C -X fetch.wait.max.ms=10 -b "$bs" -t "$1" -e -q -f '%o\n' 2>/dev/null | wc -l; }
field() { grep -o " $1=[0-9]*" <<<"$2" | cut -d= -f2; }
expect() { # OUTPUT FIELD=N...
  local out=$1
  shift
  for kv in "$@"; do
    [ "$(field "${kv%%=*}" "$out")" = "${kv#*=}" ] || fail "want ${kv}: $out"
  done
}

# 1. a dry run: counts and samples, produces and commits nothing
out=$(dlq --dry-run)
expect "$out" read=7 would_replay=2 skipped_by_class=3 truncated=1 no_source_topic=1 exhausted=0
grep -q '(decode:1 schema:2)' <<<"$out" || fail "skipped by class: $out"
grep -q 'would replay: partition=0 offset=0 class=registry to=ev dr.retries=1 reason="schema registry unreachable"' \
  <<<"$out" \
  || fail "dry-run sample: $out"
[ "$(count ev)" -eq 0 ] || fail "the dry run produced"
echo "dry run: would replay 2 of 7, produced nothing"

# 2. by default only the retryable records, with their key, value and headers
out=$(dlq)
expect "$out" read=7 replayed=2 skipped_by_class=3 truncated=1 no_source_topic=1
got=$(kcat -C -X fetch.wait.max.ms=10 -b "$bs" -t ev -e -q -f '%k|%h|%S\n' 2>/dev/null | sort)
want=$'101|app.trace=abc,dr.replayed.from=ev.dlq:0:0,dr.retries=1|10\n103|dr.replayed.from=ev.dlq:0:2,dr.retries=1|12'
[ "$got" = "$want" ] || fail "replayed records:"$'\n'"$got"$'\n'"want:"$'\n'"$want"
p=$(kcat -C -X fetch.wait.max.ms=10 -b "$bs" -t ev -e -q -f '%k %p\n' 2>/dev/null | awk '$1 == 103 {print $2}')
o=$(kcat -C -X fetch.wait.max.ms=10 -b "$bs" -t ev -e -q -f '%k %o\n' 2>/dev/null | awk '$1 == 103 {print $2}')
kcat -C -X fetch.wait.max.ms=10 -b "$bs" -t ev -p "$p" -o "$o" -c 1 -e -q -f '%s' >"$dir/binary.back" 2>/dev/null
cmp -s "$dir/binary" "$dir/binary.back" || fail "the binary value came back changed"
echo "default: the 2 retryable records replayed, key/value/headers intact, dr.replayed.from and dr.retries: 1"

# 3. a second run replays nothing new; a record dead-lettered since is read alone
out=$(dlq)
expect "$out" read=0 replayed=0
dead 108 1 "$(val v8 registry-2)" dr.reason.class=registry dr.retryable=true "$src"
out=$(dlq)
expect "$out" read=1 replayed=1
[ "$(count ev)" -eq 3 ] || fail "ev holds $(count ev) records, want 3"
echo "second run: nothing new; a new dead letter alone"

# 4. --reason-class (and its alias --class) and --all (groups of their own), --target
out=$(dlq --class schema --group g-schema-alias --dry-run)
expect "$out" read=8 would_replay=2 skipped_by_class=6
out=$(dlq --reason-class schema --group g-schema)
expect "$out" read=8 replayed=2 skipped_by_class=6 truncated=0
grep -q '(decode:1 registry:5)' <<<"$out" || fail "skipped by class: $out"
got=$(kcat -C -X fetch.wait.max.ms=10 -b "$bs" -t ev -e -q -f '%k %s\n' 2>/dev/null | grep -c schema)
[ "$got" -eq 2 ] || fail "--reason-class schema: $got schema records on ev"
out=$(dlq --all --group g-all --target other)
expect "$out" read=8 replayed=7 truncated=1 no_source_topic=0
[ "$(count other)" -eq 7 ] || fail "other holds $(count other) records, want 7"
echo "--reason-class schema: 2; --all --target other: 7 (the cut one not)"

# 5. --limit: the rest waits for the next run, nothing twice
out=$(dlq --all --group g-limit --target other --limit 3)
expect "$out" replayed=3
out=$(dlq --all --group g-limit --target other --limit 3)
expect "$out" replayed=3
out=$(dlq --all --group g-limit --target other)
expect "$out" replayed=1
froms=$(kcat -C -X fetch.wait.max.ms=10 -b "$bs" -t other -e -q -f '%h\n' 2>/dev/null | grep -o 'dr.replayed.from=[^,]*' | sort)
[ "$(sort -u <<<"$froms" | wc -l)" -eq 7 ] && [ "$(wc -l <<<"$froms")" -eq 14 ] || fail "--limit: $froms"
echo "--limit 3: 3 + 3 + 1, each record once"

# 6. bad usage
for args in "--reason-class bogus" "--all --reason-class schema" "--limit 0" "--target ev.dlq" "--to other" \
            "--from x" "--from 3 --to 1" "--from 1 --group g" "--max-retries 1001" "--max-retries -1"; do
  rc=0; dlq $args >"$dir/out" 2>"$dir/err" || rc=$?
  [ "$rc" -eq 2 ] || fail "$args: exit $rc"
done
grep -q '"bogus" is not a reason class' <(dlq --reason-class bogus 2>&1 || true) || fail "--reason-class bogus: no reason"
grep -q 'the topic to produce to is --target' <(dlq --to other 2>&1 || true) || fail "--to other: no hint"
echo "bad usage refused (exit 2)"

# 7. a target topic that does not exist: exit 1, named, nothing committed
start=$SECONDS
rc=0; dlq --all --group g-missing --target no.such.topic >"$dir/out" 2>"$dir/err" || rc=$?
[ "$rc" -eq 1 ] || fail "missing target: exit $rc"
grep -q 'target topic no.such.topic .* does not exist' "$dir/err" || fail "missing target: $(cat "$dir/err")"
kcat -L -b "$bs" 2>/dev/null | grep -q no.such.topic && fail "the check created the topic"
out=$(dlq --all --group g-missing --target other --dry-run)
expect "$out" read=8 would_replay=7
echo "missing target: exit 1 in $((SECONDS - start)) s, named, nothing committed"

# 8. a record that cannot be produced stops the run at it; the next run
#    starts there: nothing lost, nothing twice
head -c 3000 /dev/zero | tr '\0' x >"$dir/big"
dead 200 0 "$(val v200 before-big)" dr.reason.class=registry dr.retryable=true "$src"
dead 201 0 "$dir/big" dr.reason.class=registry dr.retryable=true "$src"
dead 202 0 "$(val v202 after-big)" dr.reason.class=registry dr.retryable=true "$src"
n0=$(count ev)
rc=0; dlq --set kafka.message.max.bytes=2000 --set kafka.batch.size=1000 >"$dir/out" 2>"$dir/err" || rc=$?
[ "$rc" -eq 1 ] || fail "oversized: exit $rc: $(cat "$dir/out" "$dir/err")"
grep -q 'ev.dlq \[0\] offset 5 could not be replayed: .*next run starts with it' "$dir/err" || fail "oversized: $(cat "$dir/err")"
expect "$(cat "$dir/out")" read=2 replayed=1
out=$(dlq)
expect "$out" read=2 replayed=2
[ "$(count ev)" -eq $((n0 + 3)) ] || fail "after the failure: $(count ev) records on ev, want $((n0 + 3))"
echo "a record that cannot be produced: exit 1 at it, the next run replays it and the rest once"

# 9. the replayed key lands where driftrec's producers put that user
"$DRIFTREC" erase --set "kafka.bootstrap.servers=$bs" --set topic.events=ev --user 101 >/dev/null
parts=$(kcat -C -X fetch.wait.max.ms=10 -b "$bs" -t ev -e -q -f '%k %p %S\n' 2>/dev/null | awk '$1 == 101 {print $2}' | sort -u)
[ "$(wc -l <<<"$parts")" -eq 1 ] || fail "user 101's replayed record and erase request in partitions $parts"
echo "a replayed key is partitioned like the erase request of the same user"

# 10. --from/--to: exactly that range of every partition, replayed each time
#     it is given, nothing committed (the group's run that follows reads all)
dlq_topic=rng.dlq
for p in 0 1; do
  for i in 0 1 2 3; do
    dead "r$p$i" "$p" "$(val "r$p$i" "range-$p-$i")" dr.reason.class=registry dr.retryable=true dr.source.topic=rng
  done
done
rdlq() { dlq --set topic.dlq=rng.dlq "$@"; }
froms() { kcat -C -X fetch.wait.max.ms=10 -b "$bs" -t "$1" -e -q -f '%h\n' 2>/dev/null \
            | grep -o 'dr.replayed.from=[^,]*' | cut -d= -f2 | sort | tr '\n' ' '; }
out=$(rdlq --to 1 --dry-run)
expect "$out" read=2 would_replay=2
out=$(rdlq --from 1 --to 3)
expect "$out" read=4 replayed=4
grep -q ' range=\[1..3) ' <<<"$out" || fail "range in the summary: $out"
[ "$(froms rng)" = "rng.dlq:0:1 rng.dlq:0:2 rng.dlq:1:1 rng.dlq:1:2 " ] || fail "--from 1 --to 3 replayed $(froms rng)"
out=$(rdlq --from 3 --to end)
expect "$out" read=2 replayed=2
out=$(rdlq)
expect "$out" read=8 replayed=8
[ "$(count rng)" -eq 14 ] || fail "rng holds $(count rng) records, want 4 + 2 + 8"
echo "--from 1 --to 3: offsets 1 and 2 of both partitions; nothing committed: the group's run then read all 8"

# 11. retry counts: dr.retries + 1 on the replayed record (a malformed one is
#     0); at --max-retries (3) a dead letter is exhausted, not replayed,
#     unless --max-retries is raised for a deliberate extra try
dlq_topic=rt.dlq
rt=(dr.reason.class=registry dr.retryable=true dr.source.topic=rt)
dead a0 0 "$(val a0 retry-none)" "${rt[@]}"
dead a2 0 "$(val a2 retry-2)" "${rt[@]}" dr.retries=2 dr.replayed.from=rt.dlq:1:7 app.x=y
dead a3 0 "$(val a3 retry-3)" "${rt[@]}" dr.retries=3 "dr.reason=failed again"
dead ax 0 "$(val ax retry-x)" "${rt[@]}" dr.retries=x
tdlq() { dlq --set topic.dlq=rt.dlq "$@"; }
out=$(tdlq --dry-run)
expect "$out" read=4 would_replay=3 exhausted=1
grep -q 'exhausted: partition=0 offset=2 class=registry dr.retries=3 (--max-retries 3) reason="failed again"' \
  <<<"$out" || fail "dry-run exhausted sample: $out"
grep -q 'would replay: partition=0 offset=1 class=registry to=rt dr.retries=3 ' <<<"$out" || fail "dry-run: $out"
out=$(tdlq)
expect "$out" read=4 replayed=3 exhausted=1
got=$(kcat -C -X fetch.wait.max.ms=10 -b "$bs" -t rt -e -q -f '%k|%h\n' 2>/dev/null | sort)
want=$'a0|dr.replayed.from=rt.dlq:0:0,dr.retries=1\na2|app.x=y,dr.replayed.from=rt.dlq:0:1,dr.retries=3'
want+=$'\nax|dr.replayed.from=rt.dlq:0:3,dr.retries=1'
[ "$got" = "$want" ] || fail "retry counts:"$'\n'"$got"$'\n'"want:"$'\n'"$want"
out=$(tdlq --from 2 --to 3)
expect "$out" read=1 replayed=0 exhausted=1
out=$(tdlq --from 2 --to 3 --max-retries 4)
expect "$out" read=1 replayed=1 exhausted=0
got=$(kcat -C -X fetch.wait.max.ms=10 -b "$bs" -t rt -e -q -f '%k|%h\n' 2>/dev/null | grep '^a3')
[ "$got" = "a3|dr.replayed.from=rt.dlq:0:2,dr.retries=4" ] || fail "--max-retries 4: $got"
out=$(tdlq --max-retries 0 --group g-zero)
expect "$out" read=4 replayed=0 exhausted=4
echo "dr.retries: none -> 1, 2 -> 3, x -> 1; 3 exhausted (exhausted=1) until --max-retries 4 (-> 4)"

# 12. an unreachable cluster: exit 1 within the timeout, named
start=$SECONDS
rc=0; "$DRIFTREC" dlq replay --bootstrap 127.0.0.1:1 --set topic.events=ev --timeout-ms 2000 \
      >"$dir/out" 2>"$dir/err" || rc=$?
[ "$rc" -eq 1 ] || fail "unreachable: exit $rc"
grep -q 'no metadata for the DLQ topic ev.dlq' "$dir/err" || fail "unreachable: $(cat "$dir/err")"
[ $((SECONDS - start)) -le 10 ] || fail "unreachable: took $((SECONDS - start)) s"
echo "unreachable cluster: exit 1 in $((SECONDS - start)) s"
echo "1 passed, 0 failed"
