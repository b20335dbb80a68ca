#!/usr/bin/env bash
# Storage trouble: a RocksDB write that fails must stop consumption cleanly
# (exit 1 and a message naming the cause), nothing past the stored state may
# be acknowledged, and a restart once the cause is gone continues without
# loss. Two real causes, no fake layer:
#  A. A file-size limit (`ulimit -f`, RLIMIT_FSIZE): RocksDB's WAL append
#     fails with EFBIG (driftrec ignores SIGXFSZ itself). First so low, with
#     commits 5 s apart, that the very first commit fails: nothing is stored,
#     so the restart (same group) can only resume from what Kafka holds for
#     the group, and a Kafka offset commit past the store would lose events.
#     Then 1 MiB, LIMITED_RUNS times, each run storing a little more; then
#     no limit, to the end.
#  B. A full disk (needs mount namespaces; skipped when not permitted): a
#     small tmpfs in a private mount namespace. The free-space guard
#     (state.min.free.mb) stops before RocksDB meets ENOSPC; then, guard off,
#     RocksDB meets ENOSPC itself (Debian's RocksDB 7.8 then aborts in its
#     info LOG writer: exit 134 is accepted and reported). Each time the tmpfs
#     is grown and the next run goes to the end.
# After every failed run the per-user counters sum to the sum of the stored
# offsets (one batch holds both) and never decrease; at the end every user's
# counter equals the events sent for that user (counted from the topic).
set -euo pipefail
EVENTS=${EVENTS:-100000} LIMITED_RUNS=${LIMITED_RUNS:-3}
. "$(dirname "$0")/lib.sh"

# The mock cluster keeps a group "joining" for session.timeout.ms - 1 s after
# its last member left, so restarts under the same group wait that long.
common=(--set topic.events=ev --set topic.recommendations=recs
        --set kafka.fetch.wait.max.ms=10
        --set kafka.session.timeout.ms=3000 --set kafka.heartbeat.interval.ms=500
        --set state.commit.interval.ms=200 --set ingest.max.rate=20000
        --set metrics.listen= --set run.exit.idle.ms=1500 --set log.level=info)

stored() { "$DRIFTREC" inspect --state-dir "$1" users | awk '{s += $2} END {print s + 0}'; }
# events consumed, by the stored offsets of the events topic (the changelog's and
# the model topic's positions are stored beside them)
positions() { "$DRIFTREC" inspect --state-dir "$1" offsets | awk '$1 == "ev" {s += $3} END {print s + 0}'; }

# run_driftrec LOG STATE GROUP FSIZE_KB [--set k=v]...: one run; sets $rc.
run_driftrec() {
  local log=$1 state=$2 group=$3 kb=$4
  shift 4
  rc=0
  ( ulimit -c 0; ulimit -f "$kb"
    exec timeout 120 "$DRIFTREC" run "${common[@]}" --set "kafka.bootstrap.servers=$bs" \
        --set "state.dir=$state" --set "group.id=$group" "$@" ) >"$log" 2>&1 || rc=$?
  [ "$rc" -ne 124 ] || { echo "$log: timed out"; tail -5 "$log"; exit 1; }
}

# after_failure LOG STATE PREVIOUS PATTERN RCS: the run failed with an allowed
# status and the expected message; state and offsets agree; prints the count.
after_failure() {
  local log=$1 state=$2 prev=$3 pattern=$4 rcs=$5
  echo "${log##*/}: exit $rc, $(stored "$state") events stored" >&2
  [[ " $rcs " == *" $rc "* ]] || { echo "$log: exit $rc, expected one of: $rcs" >&2; tail -5 "$log" >&2; exit 1; }
  [ "$rc" -eq 134 ] || grep -Eq "$pattern" "$log" || { echo "$log: no '$pattern'" >&2; tail -5 "$log" >&2; exit 1; }
  local s p
  s=$(stored "$state") p=$(positions "$state")
  [ "$s" -eq "$p" ] || { echo "$log: $s events stored but offsets say $p" >&2; exit 1; }
  [ "$s" -ge "$prev" ] || { echo "$log: stored events went back from $prev to $s" >&2; exit 1; }
  echo "$s"
}

# to_the_end LOG STATE GROUP [--set k=v]...: no limit; every counter must match.
to_the_end() {
  local log=$1 state=$2
  run_driftrec "$log" "$state" "$3" unlimited "${@:4}"
  [ "$rc" -eq 0 ] || { echo "$log: exit $rc after the cause was gone" >&2; tail -5 "$log" >&2; exit 1; }
  "$DRIFTREC" inspect --state-dir "$state" users | sort -n >"$state.users"
  cmp -s "$SENT" "$state.users" || { echo "$log: counters differ from the events sent" >&2; diff "$SENT" "$state.users" | head -5 >&2; exit 1; }
}

# Part B runs in its own mount namespace (this script again, with `tmpfs`).
if [ "${1:-}" = tmpfs ]; then
  trap 'umount "$dir/guard" "$dir/raw" 2>/dev/null || true; cleanup' EXIT
  mkdir -p "$dir/guard" "$dir/raw"
  mount -t tmpfs -o size=4m tmpfs "$dir/guard"
  mount -t tmpfs -o size=2m tmpfs "$dir/raw"
  run_driftrec "$dir/guard.log" "$dir/guard/st" tmpfs-guard unlimited --set state.min.free.mb=2
  g=$(after_failure "$dir/guard.log" "$dir/guard/st" 0 "nearly full" 1)
  mount -o remount,size=64m "$dir/guard"
  to_the_end "$dir/guard.end.log" "$dir/guard/st" tmpfs-guard --set state.min.free.mb=2
  run_driftrec "$dir/raw.log" "$dir/raw/st" tmpfs-raw unlimited --set state.min.free.mb=0
  r=$(after_failure "$dir/raw.log" "$dir/raw/st" 0 "No space left on device" "1 134")
  raw_rc=$rc
  mount -o remount,size=64m "$dir/raw"
  to_the_end "$dir/raw.end.log" "$dir/raw/st" tmpfs-raw --set state.min.free.mb=0
  echo "full tmpfs, guard: stopped at $g events stored (4 MiB tmpfs, 2 MiB kept free), exit 1; grown to 64 MiB: all $EVENTS applied once"
  echo "full tmpfs, RocksDB ENOSPC: exit $raw_rc at $r events stored; grown: all $EVENTS applied once"
  exit 0
fi

start_broker 4 ev recs
produce "$bs" ev "$EVENTS" 1000 500
export SENT="$dir/sent.txt"
kcat -C -b "$bs" -t ev -e -q -f '%k\n' | sort | uniq -c | awk '{print $2, $1}' | sort -n >"$SENT"
[ "$(awk '{s += $2} END {print s}' "$SENT")" -eq "$EVENTS" ] || { echo "the topic does not hold $EVENTS events"; exit 1; }

# A. file-size limit
st="$dir/fsize"
run_driftrec "$dir/fsize.0.log" "$st" fsize 128 --set state.commit.interval.ms=5000
s=$(after_failure "$dir/fsize.0.log" "$st" 0 "File too large" 1)
[ "$s" -eq 0 ] && [ -z "$("$DRIFTREC" inspect --state-dir "$st" offsets)" ] ||
  { echo "the first commit was expected to fail, but $s events were stored"; exit 1; }
progress="0"
for k in $(seq 1 "$LIMITED_RUNS"); do
  run_driftrec "$dir/fsize.$k.log" "$st" fsize 1024
  s=$(after_failure "$dir/fsize.$k.log" "$st" "$s" "File too large" 1)
  progress="$progress $s"
done
# the write that meets the limit: a commit's, or (when the run before got its
# changelog records out but not its own batch) the restore's from the changelog
grep -Eq "state commit failed|restoring the partition from its changelog failed" "$dir/fsize.1.log" ||
  { echo "no 'state commit failed' in the log"; exit 1; }
to_the_end "$dir/fsize.end.log" "$st" fsize
echo "file-size limit: $((LIMITED_RUNS + 1)) failed runs, exit 1 each, events stored after each: $progress; then all $EVENTS applied once ($(wc -l <"$SENT") users)"

# B. full disk, when this machine lets us mount a tmpfs in a private namespace
if unshare -m --propagation private sh -c "mount -t tmpfs -o size=1m tmpfs '$dir'" 2>/dev/null; then
  bs=$bs unshare -m --propagation private bash "$0" tmpfs
else
  echo "full tmpfs: skipped (mount namespaces or tmpfs mounts not permitted here)"
fi
echo "1 passed, 0 failed"
